"""A metric of one's own, registered on import (tests/test_evaluation.py selects it as a config would)."""

from genzoo.evaluation import MetricInputs, register_metric


@register_metric("mean_norm")
def mean_norm(inputs: MetricInputs) -> dict[str, float]:
    return {"mean_norm": float(inputs.fake.features.mean(0).norm())}
