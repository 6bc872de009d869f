"""The identity extractor: flattened samples (in [0, 1] for images). For 2-D toys, where no network applies,
and for FlexAE's pixel-space memorisation score."""

from __future__ import annotations

import math

import torch

from genzoo.evaluation.extractors.base import FeatureExtractor, register_extractor, to_unit_range


@register_extractor("pixels")
class PixelExtractor(FeatureExtractor):
    @classmethod
    def from_spec(cls, argument: str | None) -> PixelExtractor:
        if argument:
            raise ValueError(f"the pixels extractor takes no argument, got {argument!r}")
        return cls()

    def features(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        finite = all(math.isfinite(v) for v in value_range)
        return (to_unit_range(x, value_range) if finite else x.float()).flatten(1)

    def protocol(self) -> dict[str, str | int]:
        return {"extractor": "pixels", "input": "flattened, images in [0, 1]"}
