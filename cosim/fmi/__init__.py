"""FMU files and instances: FMI 2, FMI 3, Model Exchange, a child-process instance."""
