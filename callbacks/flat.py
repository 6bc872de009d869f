"""FlatGAN's visual and quantitative checks of equivariance: latent traversals and the tangent-plane score.

Both use only the public model API (:mod:`genzoo.base`; FlatGAN's ``latent_current`` and ``k``) and, for
the score, the datamodule's ``tangents_at(x)`` (``TangentImages``: the named transformations' tangents at
any image; ``Circle5``: the circle's counter-clockwise tangent at any point).
"""

from __future__ import annotations

import lightning as L
import torch
import torchvision
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure

from genzoo.callbacks.logging import PeriodicCallback, figure_to_array, log_image, log_metrics
from genzoo.callbacks.samples import SampleGrid
from genzoo.ops.flat import subspace_alignment, tangents_of
from genzoo.ops.utils import seeded


class LatentTraversal(PeriodicCallback):
    """Images: for ``num_rows`` fixed nuisance latents (the oriented coordinates zeroed), sweep each oriented
    coordinate z_i over its range in ``num_steps`` columns, one grid per coordinate, ``traversal/z<i>`` (the
    paper's rotation / stroke-width / time figures). 2-D data: the curves z_1 ↦ g(z_1, ·) for ``num_rows``
    fixed nuisance draws over the data and samples, ``traversal/curve``."""

    def __init__(self, num_rows: int = 10, num_steps: int = 10, every_n_steps: int | None = None,
                 every_n_epochs: int | None = 1, seed: int = 0, curve_points: int = 500) -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if num_rows < 1 or num_steps < 2 or curve_points < 2:
            raise ValueError("num_rows must be >= 1, num_steps and curve_points >= 2")
        self.num_rows, self.num_steps, self.seed, self.curve_points = num_rows, num_steps, seed, curve_points
        self.points = SampleGrid(num_points=2000, seed=seed)  # its real-point sampling and scatter style

    def base_latents(self, pl_module: L.LightningModule) -> torch.Tensor:
        return pl_module.sample_latents(self.num_rows, generator=seeded(self.seed))

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        current = pl_module.latent_current
        if current.k == 0:
            return
        if tuple(pl_module.data_shape) == (2,):
            log_image(trainer, "traversal/curve", self.curve_image(trainer, pl_module))
            return
        for i in range(current.k):
            log_image(trainer, f"traversal/z{i + 1}", self.grid(pl_module, i))

    def grid(self, pl_module: L.LightningModule, i: int) -> torch.Tensor:
        z = pl_module.latent_current.traversal(self.base_latents(pl_module), i, self.num_steps)
        images = pl_module.generate(z.to(pl_module.device)).cpu()
        low, high = pl_module.value_range
        return torchvision.utils.make_grid(((images - low) / (high - low)).clamp(0, 1), nrow=self.num_steps, padding=2)

    def curves(self, pl_module: L.LightningModule) -> torch.Tensor:
        """``(num_rows, curve_points, 2)``: g along z_1 for each fixed nuisance draw."""
        z = pl_module.latent_current.traversal(self.base_latents(pl_module), 0, self.curve_points)
        return pl_module.generate(z.to(pl_module.device)).cpu().view(self.num_rows, self.curve_points, 2)

    def curve_image(self, trainer: L.Trainer, pl_module: L.LightningModule):
        fig = Figure(figsize=(5, 5), dpi=100)
        ax = fig.add_subplot()
        samples = pl_module.generate(pl_module.sample_latents(2000, seeded(self.seed + 1)))
        ax.scatter(samples[:, 0].cpu(), samples[:, 1].cpu(), s=2, c="0.7", linewidths=0, label="samples")
        for curve in self.curves(pl_module):
            ax.plot(curve[:, 0], curve[:, 1], lw=1)
        real = self.points.real_points(trainer)
        if real is not None:
            ax.scatter(real[:, 0], real[:, 1], s=30, c="k", marker="x", label="data")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"z_1 curves, step {trainer.global_step}")
        ax.legend(loc="upper right")
        fig.tight_layout()
        return figure_to_array(fig)


def equivariance_score(generator: torch.nn.Module, z: torch.Tensor, k: int, tangents_at,
                       batch_size: int = 250) -> dict[str, float | list[float]]:
    """How well a generator's tangent k-plane span{∇_z g·e_i} at g(z) matches the data-tangent k-plane
    ``tangents_at(g(z))`` of the same named transformations: the mean cosine of their principal angles
    (``score``, basis-free), and the signed cosine of each pair (∇_z g·e_i, t_i) (``per_direction``: which
    latent axis took which transformation is not forced by the loss). Works for any generator (a WGAN-GP
    baseline too): the tangents are the forward-mode derivatives along the first k latent axes."""
    if k < 1:
        raise ValueError("the equivariance score needs k >= 1 oriented directions")
    x, generated = tangents_of(generator, z, k, batch_size)
    reference = torch.cat([tangents_at(chunk) for chunk in x.split(batch_size)]).to(generated)
    if reference.shape != generated.shape:
        raise ValueError(f"the datamodule gives tangents of shape {tuple(reference.shape[1:])}, the model "
                         f"{tuple(generated.shape[1:])}: name as many transformations as the model's k")
    score, per_direction = subspace_alignment(generated, reference)
    return {"score": float(score), "per_direction": [float(c) for c in per_direction]}


class EquivarianceScore(PeriodicCallback):
    """Logs ``eval/equivariance`` (the subspace score of :func:`equivariance_score`) and
    ``eval/equivariance_z<i>`` (per-direction cosines) on ``n_samples`` fixed latents."""

    def __init__(self, n_samples: int = 500, every_n_steps: int | None = None, every_n_epochs: int | None = 1,
                 seed: int = 0) -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.n_samples, self.seed = n_samples, seed
        self.last: dict[str, float | list[float]] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not callable(getattr(trainer.datamodule, "tangents_at", None)):
            raise ValueError("EquivarianceScore needs a datamodule with tangents_at(x) "
                             "(genzoo.datamodules.TangentImages, "
                             f"Circle5), got {type(trainer.datamodule).__name__}")
        if not hasattr(pl_module, "latent_current"):
            raise ValueError(f"EquivarianceScore needs a model with oriented latent directions (FlatGAN), got "
                             f"{type(pl_module).__name__}")
        if pl_module.latent_current.k == 0:
            rank_zero_warn("EquivarianceScore: the model has k = 0 (no oriented directions), nothing to score")

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.latent_current.k == 0:
            return
        z = pl_module.sample_latents(self.n_samples, generator=seeded(self.seed))
        self.last = equivariance_score(pl_module.sampling_network, z.to(pl_module.device), pl_module.latent_current.k,
                                       trainer.datamodule.tangents_at)
        metrics = {"eval/equivariance": self.last["score"]}
        metrics.update({f"eval/equivariance_z{i + 1}": c for i, c in enumerate(self.last["per_direction"])})
        log_metrics(trainer, metrics)
        for key, value in metrics.items():
            trainer.callback_metrics[key] = torch.tensor(value)
