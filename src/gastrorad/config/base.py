"""Shared pieces of the study-file schema, no section of its own: :class:`Strict`, the base of every
section's model (unknown keys are errors, values are validated on assignment), and the fixed
vocabulary the sections and the rest of the package draw on: the cohort names and the poolings of a
stage's deep feature maps (``features.pooling``, implemented in :mod:`gastrorad.dl.features`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

COHORT_NAMES = ("training", "internal", "external", "prospective", "test")
#: Poolings of a stage's feature maps (implemented in :func:`gastrorad.dl.features.pool_stage`).
POOLINGS = ("avg", "max", "roi_avg", "roi_std", "roi_max", "roi_p10", "roi_p90")


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
