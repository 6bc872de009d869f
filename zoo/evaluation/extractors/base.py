"""The feature-extractor contract and registry.

An extractor is a plain ``nn.Module`` mapping a batch of model-space samples to features: ``forward(x,
value_range)`` takes ``x`` of shape ``(N, *data_shape)`` in ``value_range`` (what the model generates and the
datamodule yields) and returns ``(N, dim)`` float32. Each extractor owns its preprocessing (range conversion,
quantisation, resizing), so real and generated samples always go through the same code. ``protocol()``
describes that preprocessing and the weights; it names metrics and keys the reference-statistics cache.

Extractors are built from a spec string ``"name"`` or ``"name:argument"`` (e.g. ``"inception"``,
``"inception:/path/weights.pth"``, ``"classifier:fashion_mnist"``) by :func:`build_extractor`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from genzoo.checkpoints import load_plain

EXTRACTORS: dict[str, Callable[[str | None], FeatureExtractor]] = {}


def register_extractor(name: str) -> Callable:
    """Class decorator: ``build_extractor(f"{name}:{arg}")`` calls ``cls.from_spec(arg)``."""
    def decorate(cls):
        EXTRACTORS[name] = cls.from_spec
        return cls
    return decorate


def build_extractor(spec: str) -> FeatureExtractor:
    name, _, argument = spec.partition(":")
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r} in {spec!r}; known: {sorted(EXTRACTORS)}")
    return EXTRACTORS[name](argument or None)


class FeatureExtractor(nn.Module):
    """Base class; subclasses set ``dim`` and implement ``features(x, value_range)`` and ``protocol()``.

    Extractors are frozen and stay in eval mode whatever ``train()`` is called with. A classifier network that
    ``gives_logits`` implements ``features_and_logits`` too: its class logits come from the same pass as the
    features (the Inception Score)."""

    dim: int = 0  # 0: known only once data arrives (e.g. flattened pixels)
    gives_logits: bool = False

    @classmethod
    def from_spec(cls, argument: str | None) -> FeatureExtractor:
        raise NotImplementedError

    def features(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        raise NotImplementedError

    def features_and_logits(self, x: torch.Tensor,
                            value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} gives no class logits")

    def protocol(self) -> dict[str, str | int]:
        """Everything that changes the features: name, weights fingerprint, preprocessing."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        return self.checked(self.features(x, value_range), x)

    @torch.no_grad()
    def with_logits(self, x: torch.Tensor, value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and class logits ``(N, classes)`` from one pass."""
        features, logits = self.features_and_logits(x, value_range)
        return self.checked(features, x), self.checked(logits, x)

    def checked(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise RuntimeError(f"{type(self).__name__} returned an output of shape {tuple(out.shape)} for "
                               f"{x.shape[0]} samples")
        return out.float()

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)


def to_unit_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map samples from ``value_range`` to [0, 1] (clamped: generators may overshoot)."""
    low, high = float(value_range[0]), float(value_range[1])
    if not (torch.isfinite(torch.tensor([low, high])).all() and high > low):
        raise ValueError(f"images need a finite value_range, got {value_range}")
    return ((x.float() - low) / (high - low)).clamp(0, 1)


def to_uint8_rgb(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """(N, 1 or 3, H, W) samples -> uint8 RGB, rounded as when saving a PNG (not truncated)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
    images = to_unit_range(x, value_range).mul(255).round().to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()




def load_state_dict_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``path``, with errors that name the file and what it should be."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no weights file at {path}")
    state = load_plain(path, what)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what}: {path} does not hold a state dict of tensors")
    return state
