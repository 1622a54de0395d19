"""The results file: writing, reading, claiming and committing it, plots and reports."""
