"""The deterministic-autoencoder base (WAE, FlexAE, AE-OT): encoder E, decoder D and a pluggable latent
prior (:mod:`genzoo.priors`). Generation is ``D(prior.sample(n))``; the methods differ in how the codes are
regularised and in the prior, not in this code. A method sets its phase schedule (default: one
``"autoencoder"`` phase per batch and outer step) and implements ``train_on(x, phases, noise)``.

API beyond :class:`~genzoo.base.GenerativeModel`'s: ``encode(x)``, ``decode(z)``, ``reconstruct(x)``, ``prior``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from genzoo.base import FixedCycle, GenerativeModel
from genzoo.nets import default_decoder, default_encoder
from genzoo.ops.losses import reconstruction_sse
from genzoo.ops.utils import eval_mode
from genzoo.priors import GaussianPrior, Prior
from genzoo.types import Batch, EncoderFactory, GeneratorFactory

#: (latent_dim) -> the latent prior, e.g. ``functools.partial(GaussianPrior, scale=2.0)``
PriorFactory = Callable[[int], Prior]


class AutoencoderModel(GenerativeModel):
    """Subclasses register optimizers (:meth:`add_optimizer`), may set :attr:`phase_schedule`, and implement
    :meth:`train_on` for one batch. Networks come from factories (defaults: MLPs for vectors, FlexAE's InfoGAN-style
    nets for images) through :meth:`init_encoder` and :meth:`init_decoder`; the prior from ``prior`` (default
    N(0, I)).

    ``reconstruction_weight`` scales the per-image sum of squared errors (1 in FlexAE; 0.05 in WAE's code)."""

    progress_name = "outer_step"
    budget_name = "max_outer_steps"
    compiled_networks = ("encoder", "decoder")

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (0.0, 1.0),
                 latent_dim: int = 32, encoder: EncoderFactory | None = None, decoder: GeneratorFactory | None = None,
                 prior: PriorFactory | None = None, reconstruction_weight: float = 1.0,
                 max_outer_steps: int | None = None, compile: bool | dict[str, Any] = False) -> None:
        super().__init__(data_shape, value_range, latent_dim, compile=compile)
        if reconstruction_weight <= 0:
            raise ValueError(f"reconstruction_weight must be > 0, got {reconstruction_weight}")
        if max_outer_steps is not None and max_outer_steps < 1:
            raise ValueError(f"max_outer_steps must be >= 1 or None, got {max_outer_steps}")
        self.encoder = self.init_encoder(encoder)
        self.decoder = self.init_decoder(decoder)
        self.prior = (prior or GaussianPrior)(self.latent_dim)
        if self.prior.dim != self.latent_dim:
            raise ValueError(f"the prior draws codes of dimension {self.prior.dim}, the autoencoder's latent_dim is "
                             f"{self.latent_dim}")
        self.reconstruction_weight = float(reconstruction_weight)
        self.max_outer_steps = self.step_limit = max_outer_steps
        self.phase_schedule = FixedCycle([("autoencoder",)])
        self._check_shapes()

    def init_encoder(self, factory: EncoderFactory | None) -> nn.Module:
        return (factory or default_encoder)(self.data_shape, self.latent_dim)

    def init_decoder(self, factory: GeneratorFactory | None) -> nn.Module:
        return (factory or default_decoder)(self.latent_dim, self.data_shape, self.value_range)

    @property
    def outer_step(self) -> int:
        """Completed training cycles: the papers' iterations."""
        return self.progress_step

    def _check_shapes(self) -> None:
        """Fail at construction, not mid-training, when the networks do not fit the data."""
        with torch.no_grad(), eval_mode(self.encoder), eval_mode(self.decoder):
            codes = self.encoder(torch.zeros(2, *self.data_shape))
            if tuple(codes.shape) != (2, self.latent_dim):
                raise ValueError(f"the encoder returns codes of shape {tuple(codes.shape[1:])}, expected "
                                 f"({self.latent_dim},) for latent_dim={self.latent_dim}")
            out = self.decoder(codes)
            if tuple(out.shape[1:]) != self.data_shape:
                raise ValueError(f"the decoder makes samples of shape {tuple(out.shape[1:])}, but the data has "
                                 f"shape {self.data_shape}: choose a network for this image size")

    @staticmethod
    def check_critic(critic: nn.Module, input_shape: tuple[int, ...], name: str) -> None:
        with torch.no_grad(), eval_mode(critic):
            scores = critic(torch.zeros(2, *input_shape))
        if scores.shape != (2,):
            raise ValueError(f"the {name} must return one score per sample, got shape {tuple(scores.shape)}")

    # ---- the API --------------------------------------------------------------------------------------
    @property
    def sampling_network(self) -> nn.Module:
        return self.decoder

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes from the prior; with a CPU ``generator`` the draw is the same wherever the model lives."""
        return self.prior.sample(n, generator).to(self.device)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Codes of data ``x`` (eval mode: batch-norm running statistics)."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"encode expects samples of shape {self.data_shape}, got {tuple(x.shape[1:])}")
        with eval_mode(self.encoder):
            return torch.cat([self.encoder(chunk.to(self.device)) for chunk in x.split(batch_size)]).float()

    def decode(self, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return self.generate(z, batch_size)

    def reconstruct(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return self.decode(self.encode(x, batch_size), batch_size)

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.reconstruction_weight * reconstruction_sse(x, x_hat)

    def held_out_terms(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The reconstruction error of held-out samples (the training objective's reconstruction term)."""
        x = batch["x"]
        return {"reconstruction": self.reconstruction_loss(x, self.decoder(self.encoder(x)))}

    # ---- training -------------------------------------------------------------------------------------
    def train_on(self, x: torch.Tensor, phases: tuple[str, ...], noise: torch.Generator) -> None:
        """Run ``phases`` on batch ``x``; ``noise`` seeds all of its randomness."""
        raise NotImplementedError

    def train_phases(self, batch: Batch, phases: tuple[str, ...]) -> None:
        x = batch["x"]
        if len(x) < 2:
            raise ValueError("autoencoder training needs batches of at least 2 samples")
        self.train_on(x, phases, self.noise())


def paired(codes: torch.Tensor) -> torch.Tensor:
    """Each sample's partner for interpolation: the next one in the (shuffled) batch. The authors draw a second
    independent batch; pairing within one batch gives pairs of independent samples at half the encoding cost."""
    return codes.roll(1, dims=0)


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Batch-norm layers in ``module`` still normalise with batch statistics in train mode (the forward pass and
    its gradients are unchanged) but leave their running statistics and ``num_batches_tracked`` untouched.

    Exact: with ``track_running_stats`` off, PyTorch's batch norm does not pass the buffers to the kernel in train
    mode, so nothing is blended in (``momentum=0`` would still count the batch and turn NaN statistics into
    NaN buffers). Eval-mode forwards inside read the running statistics as usual."""
    layers = [m for m in module.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
