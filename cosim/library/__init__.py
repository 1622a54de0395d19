"""Building the model library (fmus/) into FMUs: C and pythonfmu."""
