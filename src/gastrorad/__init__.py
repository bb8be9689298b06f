"""gastrorad: CT-based deep-learning radiomics for gastric cancer.

The package mirrors the pipeline of a study (see ``gastrorad --help``):

- :mod:`gastrorad.config`     the study file, typed and validated
- :mod:`gastrorad.data`       manifest and clinical tables, cohorts, input validation
- :mod:`gastrorad.io`         reading CT images (NIfTI, NRRD, MHA, DICOM) and masks (label, SEG, RTSTRUCT)
- :mod:`gastrorad.preprocess` ROI-first resampling, HU windows, normalisation and the patch modes
- :mod:`gastrorad.radiomics`  handcrafted IBSI radiomics (PyRadiomics), the reference signature
- :mod:`gastrorad.synth`      synthetic multi-centre CT cohorts with a known truth
"""

__version__ = "0.1.0"
