"""AE-OT (Lei, An, Guo et al. 2020; An et al. 2020): an autoencoder, then semi-discrete optimal transport from a
uniform box to the training codes, extended across cell boundaries so that generation does not just replay
codes and does not straddle the gaps between modes (mode collapse and mode mixture both avoided).

Training, as in the paper (§6.1) and the authors' ``demo2.py``:

1. the autoencoder minimises the per-pixel MSE (+ ``code_l1_weight``·Σ|z|, the code's 1e-5 on CelebA), with
   Adam lr 3e-3, betas (0.5, 0.999) (the paper; the code uses 2e-5);
2. when the reconstruction loss stops falling, :class:`genzoo.callbacks.FreezeEncoder` freezes the encoder (no
   gradients, batch-norm statistics fixed: the code forgot the latter) and the decoder keeps refining;
3. when the networks are trained (:meth:`after_training`, the base's post-fit stage, inside the fit's last
   training step), the training set (``datamodule.train_dataset()``) is encoded and the OT map is solved
   (:class:`genzoo.priors.TransportPrior`, :class:`genzoo.ops.ot.SemiDiscreteOT`), so the final checkpoint, sample grids
   and evaluations all have it and ``sample(n)`` works right after ``load_from_checkpoint``.

The paper trains the whole model on 25,000 CIFAR-10 and 10,000 CelebA images: the datamodule's
``train_subset`` gives that, and the OT targets are then the codes of exactly the images the autoencoder was
trained on. ``transport_samples`` instead sub-samples the targets alone (the autoencoder sees everything).

``autoencoder=False`` skips 1-2 (identity encoder and decoder): OT straight from the box to the data, the
paper's 2-D grid experiment (§6.3).
"""

from __future__ import annotations

import functools
import inspect
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn import functional as F

from genzoo.autoencoder import AutoencoderModel
from genzoo.base import FixedCycle, fit_is_finished
from genzoo.ops.ot import SemiDiscreteOT
from genzoo.ops.utils import seeded
from genzoo.priors import TransportPrior
from genzoo.types import EncoderFactory, GeneratorFactory, OptimizerFactory

#: SemiDiscreteOT settings a config may give in ``solver`` (the box comes from the prior)
SOLVER_SETTINGS = tuple(name for name in inspect.signature(SemiDiscreteOT).parameters
                        if name not in ("targets", "weights", "low", "high"))


class SolveProgress:
    """A line every ``every_s`` seconds of a long OT solve, so a run does not look frozen."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s, self.last = every_s, time.monotonic()

    def __call__(self, stats: dict) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            rank_zero_info(f"AEOT: OT step {stats['step']}: error {stats['error']:.3g}, {stats['empty_cells']} empty "
                           f"cells, {stats['num_samples']} source points per step")


def identity_network(*shapes) -> nn.Module:
    """Encoder and decoder when AE-OT runs without an autoencoder (transport straight to the data)."""
    return nn.Identity()


class AEOT(AutoencoderModel):
    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (0.0, 1.0),
                 latent_dim: int = 100, autoencoder: bool = True, encoder: EncoderFactory | None = None,
                 decoder: GeneratorFactory | None = None, optimizer: OptimizerFactory | None = None,
                 code_l1_weight: float = 0.0, box: tuple[float, float] = (-0.5, 0.5), top_k: int = 2,
                 angle_threshold: float = 0.75, interpolation_weight: float | None = None,
                 unpaired: str = "redraw", pairing: str = "per_source", pair_pool: int = 20_000,
                 solver: dict[str, Any] | None = None, transport_samples: int | None = None,
                 max_outer_steps: int | None = None, compile: bool | dict[str, Any] = False) -> None:
        data_shape = tuple(data_shape)
        if not autoencoder and data_shape != (latent_dim,):
            raise ValueError(f"without an autoencoder the transport runs on the data itself: latent_dim must "
                             f"equal the data dimension, got latent_dim={latent_dim} for data {data_shape}")
        if code_l1_weight < 0:
            raise ValueError(f"code_l1_weight must be >= 0, got {code_l1_weight}")
        if transport_samples is not None and transport_samples < 1:
            raise ValueError(f"transport_samples must be >= 1 or None (all), got {transport_samples}")
        unknown = sorted(set(solver or {}) - set(SOLVER_SETTINGS))
        if unknown:
            raise ValueError(f"unknown OT solver settings {unknown}; known: {list(SOLVER_SETTINGS)}")
        prior = functools.partial(TransportPrior, low=box[0], high=box[1], top_k=top_k, angle_threshold=angle_threshold,
                                  weight=interpolation_weight, unpaired=unpaired, pairing=pairing, pair_pool=pair_pool)
        super().__init__(data_shape, value_range, latent_dim, encoder=encoder if autoencoder else identity_network,
                         decoder=decoder if autoencoder else identity_network, prior=prior,
                         max_outer_steps=max_outer_steps, compile=compile)
        self.has_autoencoder = bool(autoencoder)
        self.code_l1_weight = float(code_l1_weight)
        self.solver_settings = dict(solver or {})
        self.transport_samples = transport_samples
        self.encoder_frozen = False
        if autoencoder:
            # frozen encoder weights get no gradient, so Adam skips them; the list stays fixed for checkpoints
            self.add_optimizer("autoencoder", lambda: [*self.encoder.parameters(), *self.decoder.parameters()],
                               optimizer or functools.partial(torch.optim.Adam, lr=3e-3, betas=(0.5, 0.999)))
        else:
            self.phase_schedule = FixedCycle([()])  # nothing to learn before the transport

    # ---- the autoencoder phase --------------------------------------------------------------------------
    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(x_hat.float(), x.float())  # per-pixel, the paper's "L² loss"

    def train_on(self, x: torch.Tensor, phases: tuple[str, ...], noise: torch.Generator) -> None:
        if "autoencoder" not in phases:
            return
        with self.training_phase("autoencoder"):
            codes = self.encoder(x)
            reconstruction = self.reconstruction_loss(x, self.decoder(codes))
            loss = reconstruction + self.code_l1_weight * codes.float().abs().sum()
            self.update("autoencoder", loss, {"reconstruction": reconstruction})
        # the epoch mean, synchronised across ranks, drives FreezeEncoder identically everywhere
        self.log("train/reconstruction_epoch", reconstruction.detach(), on_step=False, on_epoch=True,
                 sync_dist=True)

    def freeze_encoder(self, announce: bool = True) -> None:
        """Stop training the encoder: no gradients, and batch norm uses (and keeps) its running statistics."""
        if not self.has_autoencoder:
            return
        self.encoder_frozen = True
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        if announce:
            rank_zero_info(f"AEOT: encoder frozen after epoch {self.current_epoch + 1}; refining the decoder")

    def train(self, mode: bool = True) -> AEOT:
        super().train(mode)
        if self.encoder_frozen:  # Lightning puts the module back in train mode every epoch
            self.encoder.eval()
        return self

    # ---- the transport phase ----------------------------------------------------------------------------
    @torch.no_grad()
    def training_codes(self, dataset, batch_size: int = 500) -> torch.Tensor:
        """Codes of the (first ``transport_samples``, in a seeded random order) training samples. Rank 0's
        codes are broadcast, so every rank solves the same problem whatever its kernels' rounding."""
        indices = torch.arange(len(dataset))
        if self.transport_samples is not None and self.transport_samples < len(dataset):
            order = torch.randperm(len(dataset), generator=seeded(self.noise_seed or 0))
            indices = order[: self.transport_samples].sort().values
        subset = torch.utils.data.Subset(dataset, indices.tolist())
        loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False)
        codes = torch.cat([self.encode(batch["x"]) for batch in loader])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(codes, src=0)
        return codes

    def fit_transport(self, dataset, checkpoint: str | None = None) -> dict:
        """Encode ``dataset`` (a dataset of dict samples, e.g. ``datamodule.train_dataset()``) and solve the OT map."""
        codes = self.training_codes(dataset)
        settings = {"seed": self.noise_seed or 0, **self.solver_settings}
        rank_zero_info(f"AEOT: solving semi-discrete OT to {len(codes)} codes of dimension {codes.shape[1]}")
        report = self.prior.fit(codes, checkpoint=checkpoint, callback=SolveProgress(), **settings)
        if checkpoint is not None and self.global_rank == 0:  # done: the map now lives in the model's state
            Path(checkpoint).unlink(missing_ok=True)
        rank_zero_info(f"AEOT: OT {'converged' if report['converged'] else 'did NOT converge'} after "
                       f"{report['steps']} steps (error {report['error']:.3g}, {report['empty_cells']} empty "
                       f"cells, {report['seconds']:.1f} s)")
        return report

    @property
    def ready_to_sample(self) -> bool:
        return self.prior.fitted

    # ---- the post-fit stage ---------------------------------------------------------------------------------
    def after_training_done(self) -> bool:
        return self.prior.fitted

    def after_training(self) -> None:
        report = self.fit_transport(self._training_set(), self._solver_checkpoint())
        self.log_dict({f"transport/{k}": float(v) for k, v in report.items()}, rank_zero_only=True)

    def _training_set(self):
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "train_dataset"):
            raise RuntimeError("AEOT solves its transport map on the training set of a zoo datamodule "
                               "(trainer.fit(model, datamodule=...)); with bare dataloaders call "
                               "model.fit_transport(dataset) yourself")
        dataset = datamodule.train_dataset()
        train_subset = getattr(datamodule, "train_subset", None)
        if train_subset is not None and self.transport_samples is not None and self.transport_samples < len(dataset):
            rank_zero_warn(f"AEOT: the datamodule trains on train_subset={train_subset} images and "
                           f"transport_samples={self.transport_samples} sub-samples their codes again, so the OT "
                           f"targets are not every training image's code; set only one of the two")
        return dataset

    def _solver_checkpoint(self) -> str:
        return f"{self.trainer.default_root_dir}/transport_solver.pt"

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.prior.fitted and not fit_is_finished(self.trainer):
            # more training moves the codes: the old map no longer fits them
            self.prior.targets = self.prior.targets[:0]
            self.prior.potential = self.prior.potential[:0]

    # ---- checkpoints ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["zoo"]["encoder_frozen"] = self.encoder_frozen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # before the shared training contract the flag lived in the schedule state
        if checkpoint["zoo"].get("encoder_frozen", checkpoint["zoo"].get("schedule", {}).get("encoder_frozen")):
            self.freeze_encoder(announce=False)
