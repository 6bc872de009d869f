"""Lightning-free evaluation of generative models: feature extraction sharded over ranks through a small
:class:`Collective`, the reference-feature cache, the :class:`Evaluator` and the metric registry.

- :mod:`~zoo.evaluation.evaluator` — :class:`Evaluator` (the protocol) and :class:`EvaluationResult`;
- :mod:`~zoo.evaluation.registry` — :func:`register_metric` and the registered metrics (fid, kid, ...);
- :mod:`~zoo.evaluation.metrics` — the maths: pure functions on feature tensors;
- :mod:`~zoo.evaluation.features` — extraction, gathering across ranks, datamodule splits;
- :mod:`~zoo.evaluation.reference` — the on-disk cache of real-data features;
- :mod:`~zoo.evaluation.collective` — the collective operations (single process by default);
- :mod:`~zoo.evaluation.extractors` — the feature extractors (``build_extractor("inception")``).

The training callback that runs an evaluator is ``callbacks.Evaluation``."""

from zoo.evaluation.collective import Collective
from zoo.evaluation.evaluator import SAMPLE_NORMALIZATIONS, EvaluationResult, Evaluator
from zoo.evaluation.extractors import FeatureExtractor, build_extractor, register_extractor
from zoo.evaluation.features import FeatureSet
from zoo.evaluation.reference import default_cache_dir
from zoo.evaluation.registry import METRICS, MetricInputs, MetricOptions, register_metric

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
