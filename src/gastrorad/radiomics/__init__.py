"""Handcrafted IBSI radiomics: the reference signature a deep signature must beat.

- :mod:`.handcrafted`: features of one image and ROI (:func:`extract_handcrafted`).
- :mod:`.table`: the cached, parallel feature table of a study (:func:`extract_feature_table`).
"""

from gastrorad.radiomics.handcrafted import DEFAULT_CLASSES, HandcraftedSettings, extract_handcrafted, library_version
from gastrorad.radiomics.table import HandcraftedTable, extract_feature_table

__all__ = [
    "DEFAULT_CLASSES",
    "HandcraftedSettings",
    "HandcraftedTable",
    "extract_feature_table",
    "extract_handcrafted",
    "library_version",
]
