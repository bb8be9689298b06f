"""Signatures, clinical selection, fusion models and nomograms."""
