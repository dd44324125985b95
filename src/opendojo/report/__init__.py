"""Plots and the self-contained HTML report (matplotlib figures embedded as PNG)."""

from opendojo.report import plots
from opendojo.report.html import Section, figure_names, render, write_atomic

__all__ = ["Section", "figure_names", "plots", "render", "write_atomic"]
