"""The report of a run: one self-contained HTML file (:mod:`.html`), with the TRIPOD+AI
checklist filled where the run knows the answer (:mod:`.tripod`) and the software versions
(:mod:`.versions`)."""

from gastrorad.report.html import build_report

__all__ = ["build_report"]
