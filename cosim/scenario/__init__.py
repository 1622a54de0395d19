"""The scenario file: reading, checking, cohorts, criteria, SSP."""
