"""The metrics an :class:`~genzoo.evaluation.Evaluator` can compute, one function each, after StyleGAN2-ADA's
``metric_main.py``: a metric is a function from :class:`MetricInputs` to its values, registered under the name
that ``Evaluation(metrics=[...])`` selects it by::

    @register_metric("mean_gap")
    def mean_gap(inputs: MetricInputs) -> dict[str, float]:
        return {"mean_gap": float((inputs.fake.features.mean(0) - inputs.real.features.mean(0)).norm())}

Values are logged as ``<prefix>/<value name>`` (``eval/mean_gap``). ``needs`` asks the evaluator for more than
the generated and reference features: ``"pixels"`` (8-bit samples beside the features), ``"logits"`` (the
extractor's class logits of the generated samples, from the same pass: Inception only), ``"train"``/``"test"``
(features of those whole splits, subset as the reference) and ``"reconstruction"`` (``model.reconstruct`` of the
reference samples). The maths lives in :mod:`genzoo.evaluation.metrics`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from genzoo.evaluation import metrics as M
from genzoo.evaluation.features import FeatureSet

NEEDS = ("pixels", "logits", "train", "test", "reconstruction")


@dataclass(kw_only=True)
class MetricOptions:
    """Metric settings; defaults are the reference implementations' (see :mod:`genzoo.evaluation.metrics`).

    ``kid_seed`` seeds KID's subset draws (not the run's seed): torch-fidelity's default, so that the same
    features give torch-fidelity's numbers."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = 2020
    inception_score_splits: int = 10
    pr_k: int = 3
    prd_clusters: int = 20
    prd_angles: int = 1001
    prd_runs: int = 10
    prd_beta: float = 8.0


@dataclass
class MetricInputs:
    """What a metric function gets, on rank zero, with every feature set on the extractor's device.

    ``extra`` holds the feature sets the metric ``needs`` (``"train"``, ``"test"``, ``"reconstruction"``);
    ``memo`` lives as long as the evaluator evaluates one datamodule (for values fixed by the data alone). A
    metric records its settings in ``protocol[<its name>]`` and curves to plot in ``curves[<its name>]``."""

    fake: FeatureSet
    real: FeatureSet
    options: MetricOptions
    seed: int
    reference_split: str
    extra: dict[str, FeatureSet] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


MetricFunction = Callable[[MetricInputs], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    function: MetricFunction
    needs: frozenset[str]


METRICS: dict[str, Metric] = {}


def register_metric(name: str, needs: tuple[str, ...] = ()) -> Callable[[MetricFunction], MetricFunction]:
    """Function decorator: ``Evaluator(metrics=[name])`` computes ``function(inputs)``."""
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise ValueError(f"metric {name!r} needs unknown inputs {unknown}; choose from {list(NEEDS)}")

    def decorate(function: MetricFunction) -> MetricFunction:
        METRICS[name] = Metric(function, frozenset(needs))
        return function
    return decorate


def resolve_metric_names(names: Sequence[str]) -> tuple[str, ...]:
    """The registered names; ``"package.module:name"`` imports the module first (where ``name`` is registered), so a
    metric of your own can be selected from a config: ``metrics: [fid, my_project.metrics:mean_gap]``."""
    resolved = []
    for name in names:
        module, _, short = name.rpartition(":")
        if module:
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise ValueError(f"metric {name!r}: cannot import {module!r} ({error})") from error
        resolved.append(short)
    return tuple(resolved)


def checked_metric_names(names: Sequence[str]) -> tuple[str, ...]:
    """:func:`resolve_metric_names`, then every name must be registered (and there must be one)."""
    resolved = resolve_metric_names(names)
    unknown = sorted(set(resolved) - set(METRICS))
    if unknown or not resolved:
        raise ValueError(f"unknown or no metrics {unknown or list(names)}; choose from {list(METRICS)}")
    return resolved


def metric_needs(names: Sequence[str]) -> frozenset[str]:
    """What the named metrics need beyond generated and reference features (:data:`NEEDS`)."""
    return frozenset().union(*(METRICS[name].needs for name in names))


# ---------------------------------------------------------------------------------------------------- metrics

@register_metric("fid")
def fid(inputs: MetricInputs) -> dict[str, float]:
    return {"fid": M.frechet_distance(inputs.fake.features, inputs.real.features)}


@register_metric("kid")
def kid(inputs: MetricInputs) -> dict[str, float]:
    o, f, r = inputs.options, inputs.fake.features, inputs.real.features
    subset = min(o.kid_subset_size, len(f), len(r))
    value, std = M.kernel_distance(f, r, o.kid_subsets, subset, seed=o.kid_seed)
    inputs.protocol["kid"] = {"subsets": o.kid_subsets, "subset_size": subset, "seed": o.kid_seed}
    return {"kid": value, "kid_std": std}


@register_metric("inception_score", needs=("logits",))
def inception_score(inputs: MetricInputs) -> dict[str, float]:
    """Salimans et al.'s IS of the generated samples, from the logits of the pass that gave their features."""
    splits = inputs.options.inception_score_splits
    inputs.protocol["inception_score"] = {"splits": splits}
    mean, std = M.inception_score(inputs.fake.logits, splits)
    return {"is_mean": mean, "is_std": std}


@register_metric("precision_recall")
def precision_recall(inputs: MetricInputs) -> dict[str, float]:
    inputs.protocol["precision_recall"] = {"k": inputs.options.pr_k}
    return M.precision_recall(inputs.real.features, inputs.fake.features, k=inputs.options.pr_k)


@register_metric("prd")
def prd(inputs: MetricInputs) -> dict[str, float]:
    o, f, r = inputs.options, inputs.fake.features, inputs.real.features
    n = min(len(f), len(r))  # PRD compares equal-sized sets, as the reference enforces
    curve = M.prd(f[:n], r[:n], o.prd_clusters, o.prd_angles, o.prd_runs, seed=inputs.seed)
    inputs.curves["prd"] = curve
    inputs.protocol["prd"] = {"n": n, "clusters": o.prd_clusters, "angles": o.prd_angles, "runs": o.prd_runs,
                              "beta": o.prd_beta}
    f8, f1_8 = M.prd_f_beta(*curve, beta=o.prd_beta)
    return {"prd_f8": f8, "prd_f1_8": f1_8}


@register_metric("reconstruction_fid", needs=("reconstruction",))
def reconstruction_fid(inputs: MetricInputs) -> dict[str, float]:
    """FID of the model's reconstructions of the reference samples against those samples (FlexAE's protocol)."""
    reconstructions = inputs.extra["reconstruction"].features
    inputs.protocol["reconstruction_fid"] = {"n": len(reconstructions), "split": inputs.reference_split}
    return {"reconstruction_fid": M.frechet_distance(reconstructions, inputs.real.features)}


@register_metric("memorization", needs=("pixels", "train", "test"))
def memorization(inputs: MetricInputs) -> dict[str, float]:
    """FlexAE's PMS (pixels) and IMS (features) of generated samples against train, with the train-train and
    test-train baselines (fixed by the data, so computed once per datamodule)."""
    fake, train, test = inputs.fake, inputs.extra["train"], inputs.extra["test"]
    inputs.protocol["memorization"] = {"n_train": len(train.features), "n_test": len(test.features),
                                       "pixels": "uint8 / 255, flattened"}
    if "memorization_baselines" not in inputs.memo:
        inputs.memo["memorization_baselines"] = {
            "pms_train_train": M.memorization_score(train.unit_pixels(), train.unit_pixels(), exclude_self=True),
            "ims_train_train": M.memorization_score(train.features, train.features, exclude_self=True),
            "pms_test_train": M.memorization_score(test.unit_pixels(), train.unit_pixels()),
            "ims_test_train": M.memorization_score(test.features, train.features)}
    return {"pms": M.memorization_score(fake.unit_pixels(), train.unit_pixels()),
            "ims": M.memorization_score(fake.features, train.features), **inputs.memo["memorization_baselines"]}
