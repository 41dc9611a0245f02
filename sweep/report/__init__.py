"""The report that answers "what justifies He initialisation?" point by point, from stored results."""

from sweep.report.build import build, load_results

__all__ = ["build", "load_results"]
