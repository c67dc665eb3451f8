"""The offline HTML report of a trench workflow's folder (``<folder>/report.html``)."""
from .build import REPORT_NAME, build_report

__all__ = ["build_report", "REPORT_NAME"]
