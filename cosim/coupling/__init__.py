"""The coupling graph, the signal array it makes, and its partition over ranks."""
