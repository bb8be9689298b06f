"""Synthetic multi-centre CT cohorts with a known truth (``gastrorad synth``)."""

from gastrorad.synth.cohort import SynthResult, synthesize
from gastrorad.synth.outcomes import KINDS

__all__ = ["KINDS", "SynthResult", "synthesize"]
