"""Executing a plan: ``run`` (the entry point, stores and processes), ``compute`` (kernel calls
assembled into tiles), ``prepare`` (laying out and checking stores), ``checkpoint`` (the work
record), ``watchdog`` (deadlines), ``signals`` (Ctrl-C, SIGTERM) and ``distributed`` (several
processes)."""
