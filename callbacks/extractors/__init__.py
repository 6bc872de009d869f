"""Feature extractors for the evaluation metrics, built from spec strings by :func:`build_extractor`.

``inception[:weights]``, ``vgg16[:weights]``, ``classifier:<name or path>``, ``pixels``."""

from callbacks.extractors import classifier, pixels, pretrained  # noqa: F401  (registration)
from callbacks.extractors.base import EXTRACTORS, FeatureExtractor, build_extractor, register_extractor

__all__ = ["EXTRACTORS", "FeatureExtractor", "build_extractor", "register_extractor"]
