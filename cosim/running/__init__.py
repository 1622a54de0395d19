"""Running a scenario: the pipeline and its strategies (one process, MPI), supervision,
checkpoints."""
