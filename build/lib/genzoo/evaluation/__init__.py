"""Lightning-free evaluation of generative models: feature extraction sharded over ranks through a small
:class:`Collective`, the reference-feature cache, the :class:`Evaluator` and the metric registry.

- :mod:`~genzoo.evaluation.evaluator` — :class:`Evaluator` (the protocol) and :class:`EvaluationResult`;
- :mod:`~genzoo.evaluation.registry` — :func:`register_metric` and the registered metrics (fid, kid, ...);
- :mod:`~genzoo.evaluation.metrics` — the maths: pure functions on feature tensors;
- :mod:`~genzoo.evaluation.features` — extraction, gathering across ranks, datamodule splits;
- :mod:`~genzoo.evaluation.reference` — the on-disk cache of real-data features;
- :mod:`~genzoo.evaluation.collective` — the collective operations (single process by default);
- :mod:`~genzoo.evaluation.extractors` — the feature extractors (``build_extractor("inception")``).

The training callback that runs an evaluator is ``genzoo.callbacks.Evaluation``."""

from genzoo.evaluation.collective import Collective
from genzoo.evaluation.evaluator import SAMPLE_NORMALIZATIONS, EvaluationResult, Evaluator
from genzoo.evaluation.extractors import FeatureExtractor, build_extractor, register_extractor
from genzoo.evaluation.features import FeatureSet
from genzoo.evaluation.reference import default_cache_dir
from genzoo.evaluation.registry import METRICS, MetricInputs, MetricOptions, register_metric

__all__ = [
    "METRICS",
    "SAMPLE_NORMALIZATIONS",
    "Collective",
    "EvaluationResult",
    "Evaluator",
    "FeatureExtractor",
    "FeatureSet",
    "MetricInputs",
    "MetricOptions",
    "build_extractor",
    "default_cache_dir",
    "register_extractor",
    "register_metric",
]
