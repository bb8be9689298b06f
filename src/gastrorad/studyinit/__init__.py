"""``gastrorad init``: a study folder (manifest, clinical table, study file) from folders of
images and masks and a CSV/XLSX spreadsheet. Python: :func:`init_study`."""

from gastrorad.studyinit.build import InitResult, init_study

__all__ = ["InitResult", "init_study"]
