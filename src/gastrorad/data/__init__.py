"""The study's tables: image manifest, clinical table, cohort assignment, and their validation."""

from gastrorad.data.cohorts import assign_cohorts
from gastrorad.data.tables import load_clinical, load_manifest, read_table
from gastrorad.data.validate import ValidationReport, validate_study

__all__ = ["ValidationReport", "assign_cohorts", "load_clinical", "load_manifest", "read_table", "validate_study"]
