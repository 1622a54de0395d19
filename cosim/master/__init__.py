"""Stepping a coupled system: masters, an execution, the call journal, the run description."""
