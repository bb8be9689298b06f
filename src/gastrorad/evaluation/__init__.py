"""``gastrorad evaluate``: every model on every cohort, with cut-offs locked on training.

:mod:`.frame` gathers the models' scores with the outcome (fusion models from
``predictions.csv``, image signatures from ``signatures.csv``); :mod:`.binary` and
:mod:`.survival` compute the seeds' evidence per cohort; :mod:`.study` writes it as
``metrics/metrics.json``, one CSV per table and the figures.
"""

from gastrorad.evaluation.study import EvaluationResult, evaluate_study

__all__ = ["EvaluationResult", "evaluate_study"]
