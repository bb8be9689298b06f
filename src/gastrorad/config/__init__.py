"""The study file: one YAML that drives a whole study, validated into typed objects."""

from gastrorad.config.study import (CohortConfig, OutcomeConfig, PatchConfig, PreprocessConfig, StudyConfig,
                                    load_study)

__all__ = ["CohortConfig", "OutcomeConfig", "PatchConfig", "PreprocessConfig", "StudyConfig", "load_study"]
