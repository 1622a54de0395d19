"""Patient-specific twins: fitting to measured data (fit, personalise), therapy comparison, privacy (docs/twins.md)."""
