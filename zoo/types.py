"""Factory types the CLI can fill from YAML (``class_path`` + ``init_args``; the leading arguments come
from the model): ``generator: {class_path: genzoo.nets.DCGANGenerator, init_args: {width: 64}}``."""

from collections.abc import Callable, Iterable

import torch
from torch import nn

#: a batch: ``{"x": samples, "label"?: ..., "tangents"?: (B, *data_shape, k)}``
Batch = dict[str, torch.Tensor]
#: (latent_dim, data_shape, value_range) -> generator network
GeneratorFactory = Callable[[int, tuple[int, ...], tuple[float, float]], nn.Module]
#: (data_shape, latent_dim) -> encoder network returning codes (n, latent_dim)
EncoderFactory = Callable[[tuple[int, ...], int], nn.Module]
#: (data_shape) -> critic network returning one score per sample
CriticFactory = Callable[[tuple[int, ...]], nn.Module]
#: (parameters) -> optimizer, e.g. ``{class_path: torch.optim.Adam, init_args: {lr: 1e-4}}``
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
