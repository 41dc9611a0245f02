"""Reports and figures from any stored sweep; the paper's report is the same machinery plus its prose."""

from sweep.report.build import build, load_results
from sweep.report.sections import KINDS, Section, Skipped, figure
from sweep.report.survey import Survey, parse_selection, survey

__all__ = ["KINDS", "Section", "Skipped", "Survey", "build", "figure", "load_results", "parse_selection", "survey"]
