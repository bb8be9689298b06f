"""The locked model bundle (:mod:`.export`) and applying it to new patients (:mod:`.predict`)."""

from gastrorad.bundle.export import export_bundle, load_bundle
from gastrorad.bundle.predict import predict_patients

__all__ = ["export_bundle", "load_bundle", "predict_patients"]
