"""Patient-specific twins: fits to measured data (fit, personalise), therapy comparison,
privacy (docs/twins.md)."""
