"""Feature extractors for the evaluation metrics, built from spec strings by :func:`build_extractor`.

``inception[:weights]``, ``vgg16[:weights]``, ``classifier:<name or path>``, ``pixels``. The classifier's
training command (it needs the datamodules) is ``zoo train-extractor`` (:mod:`genzoo.callbacks.extractors.train`)."""

from genzoo.evaluation.extractors import classifier, pixels, pretrained  # noqa: F401  (registration)
from genzoo.evaluation.extractors.base import EXTRACTORS, FeatureExtractor, build_extractor, register_extractor

__all__ = ["EXTRACTORS", "FeatureExtractor", "build_extractor", "register_extractor"]
