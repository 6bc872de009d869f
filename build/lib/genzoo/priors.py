"""Latent priors of deterministic autoencoders: objects with ``sample(n)`` whose codes the decoder turns into
data (Pythae's model/sampler split). WAE fixes a Gaussian, FlexAE learns one (P-GEN) and AE-OT fits a transport
map; the autoencoder's training code does not change with the prior.

Priors are ``nn.Module``s so that learned ones live in the model's state dict, checkpoints and DDP.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.nets import MLPGenerator
from genzoo.ops.ot import SemiDiscreteOT, UniformBox, accepted_pairs, extended_codes, pair_codes, top_cells
from genzoo.types import GeneratorFactory


class Prior(nn.Module):
    """``sample(n, generator)``: ``n`` codes of dimension ``dim``, without gradients."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"a prior's dim must be >= 1, got {dim}")
        self.dim = int(dim)

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


def standard_normal(n: int, dim: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's device (so seeded draws do not depend on where the model is),
    then moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randn(n, dim, generator=generator, device=source).to(device)


class GaussianPrior(Prior):
    """N(0, scale² I): WAE's fixed prior (``pz_scale`` 1 in the WAE code)."""

    def __init__(self, dim: int, scale: float = 1.0) -> None:
        super().__init__(dim)
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.scale * standard_normal(n, self.dim, generator, self.device)


class LearnedPrior(Prior):
    """FlexAE's P-GEN G_ψ: N(0, I_{m'}) noise -> codes in R^m, trained adversarially toward the aggregate
    posterior (the model owns that training; the prior is only the network and its noise).

    ``network(noise_dim, (dim,), None)`` builds G_ψ; the default is the authors' 4 x 1024 ReLU MLP with a
    linear output and Glorot-normal weights (FlexAESR.py L246-261). ``noise_dim`` m' defaults to m, as in the
    code; the paper asks only that m' be at least the data's intrinsic dimension."""

    def __init__(self, dim: int, noise_dim: int | None = None, network: GeneratorFactory | None = None) -> None:
        super().__init__(dim)
        self.noise_dim = int(noise_dim or dim)
        if self.noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        factory = network or (lambda m_in, shape, _: MLPGenerator(m_in, shape, None, 1024, 4, "glorot_normal"))
        self.network = factory(self.noise_dim, (self.dim,), None)
        with torch.no_grad():
            out = self.network(torch.zeros(2, self.noise_dim))
        if tuple(out.shape) != (2, self.dim):
            raise ValueError(f"the prior network maps noise to shape {tuple(out.shape[1:])}, expected ({self.dim},)")

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal(n, self.noise_dim, generator, self.device)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.network(noise)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return self(self.noise(n, generator)).float()
        finally:
            self.train(was_training)


PAIRINGS = ("per_source", "per_pair")


class TransportPrior(Prior):
    """AE-OT's prior: the semi-discrete OT map from the uniform box ``[low, high]^d`` to the training codes,
    extended across cell boundaries (:func:`genzoo.ops.ot.extended_codes`). Codes and potential h are buffers, so they
    live in the state dict and checkpoints; :meth:`fit` solves for h.

    ``top_k`` cells are ranked per source point (2: demo1's own-cell/runner-up pairs; the authors' CelebA demo
    uses 20); ``angle_threshold`` (radians) is the dihedral angle above which a pair crosses the singular set
    (paper: 0.75 for MNIST/Fashion-MNIST/CelebA, 0.68 for CIFAR-10; code: 0.7 CelebA, 0.2 the 2-D toys);
    ``weight`` the position on the segment (None: uniform, demo1; 0.75: demo2). ``top_k=1`` is the plain map,
    which only reproduces training codes.

    ``pairing`` says which pairs the samples come from:

    - ``"per_source"``: one sample per source point, from its highest-ranked accepted pair, so a pair is used
      in proportion to the source volume that picks it. Source points whose pairs are all rejected are redrawn
      (``unpaired="redraw"``, the authors drop them) or give their own code (``"code"``).
    - ``"per_pair"`` (the authors' ``gen_P``): the distinct accepted pairs found by ``pair_pool`` source points
      (demo2 uses 20,000; every accepted runner-up of a point counts, not only the best) are equally likely,
      whatever the size of the region that found them. ``unpaired`` does not apply."""

    def __init__(self, dim: int, low: float = -0.5, high: float = 0.5, top_k: int = 2,
                 angle_threshold: float = 0.75, weight: float | None = None,
                 unpaired: str = "redraw", pairing: str = "per_source", pair_pool: int = 20_000) -> None:
        super().__init__(dim)
        if top_k < 1 or angle_threshold < 0 or unpaired not in ("redraw", "code"):
            raise ValueError(f"TransportPrior: need top_k >= 1, angle_threshold >= 0 and unpaired in "
                             f"('redraw', 'code'), got {top_k}, {angle_threshold}, {unpaired!r}")
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1] or None (uniform), got {weight}")
        if pairing not in PAIRINGS:
            raise ValueError(f"TransportPrior: pairing must be one of {PAIRINGS}, got {pairing!r}")
        if pairing == "per_pair" and (top_k < 2 or unpaired != "redraw" or pair_pool < 1):
            raise ValueError(f"TransportPrior: pairing='per_pair' needs top_k >= 2 (a runner-up to pair with), "
                             f"pair_pool >= 1 and no unpaired='code' (it only ever uses accepted pairs), got "
                             f"top_k={top_k}, pair_pool={pair_pool}, unpaired={unpaired!r}")
        self.box = UniformBox(dim, low, high)
        self.low, self.high = float(low), float(high)
        self.top_k, self.angle_threshold, self.weight, self.unpaired = top_k, float(angle_threshold), weight, unpaired
        self.pairing, self.pair_pool = pairing, int(pair_pool)
        self.register_buffer("targets", torch.zeros(0, dim))
        self.register_buffer("potential", torch.zeros(0))
        self.solve_report: dict | None = None

    @property
    def fitted(self) -> bool:
        return len(self.targets) > 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # the number of codes is only known once fitted: take the saved buffers' shapes
        for name in ("targets", "potential"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, codes: torch.Tensor, checkpoint: str | None = None, callback=None, **solver_settings) -> dict:
        """Solve the OT problem to ``codes`` (:class:`genzoo.ops.ot.SemiDiscreteOT` settings as keywords; a long solve
        saves its state to ``checkpoint`` and resumes from it; ``callback`` gets each step's statistics); returns the
        solve report (converged, steps,
        error, empty_cells, ...)."""
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise ValueError(f"codes must be shaped (N, {self.dim}), got {tuple(codes.shape)}")
        # Identical codes (duplicate training images) tie everywhere, so all but one cell of each group would
        # stay empty for ever: they become one target carrying their summed mass.
        unique, inverse = torch.unique(codes.detach(), dim=0, return_inverse=True)
        weights = torch.bincount(inverse, minlength=len(unique)).double() / len(codes)
        solver = SemiDiscreteOT(unique, weights, low=self.low, high=self.high, **solver_settings)
        result = solver.solve(checkpoint=checkpoint, callback=callback)
        self.targets = unique.to(self.targets.device, torch.float32).clone()
        self.potential = solver.h.to(self.potential.device, torch.float32)
        self.solve_report = {**{k: v for k, v in vars(result).items() if k != "history"},
                             "codes": len(codes), "merged_duplicates": len(codes) - len(unique)}
        return self.solve_report

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError("the AE-OT transport map is not fitted yet: it is solved at the end of training "
                               "(or call model.fit_transport(datamodule))")

    @torch.no_grad()
    def transport(self, points: torch.Tensor) -> torch.Tensor:
        """The plain OT map T(x) = y_argmax for source points [n, d]."""
        self._require_fit()
        return self.targets[top_cells(points, self.targets, self.potential, 1)[:, 0]]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        self._require_fit()
        if self.pairing == "per_pair":
            return self._sample_per_pair(n, generator)
        kept, total, drawn = [], 0, 0
        for _ in range(100):
            points = self.box.sample(max(n - total, 16) * 2, generator, self.device)
            codes, accepted = extended_codes(points, self.targets, self.potential, self.top_k,
                                             self.angle_threshold, self.weight, generator)
            drawn += len(points)
            if self.unpaired == "redraw":
                codes = codes[accepted.to(codes.device)]
            kept.append(codes)
            total += len(codes)
            if total >= n:
                return torch.cat(kept)[:n]
        raise RuntimeError(f"TransportPrior: only {total} of {drawn} source points found a pair within "
                           f"angle_threshold={self.angle_threshold}; raise the threshold or use unpaired='code'")

    def _sample_per_pair(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        # The authors decode every distinct accepted pair of their source points once, so their sample count is
        # whatever that set holds. Here n pairs are drawn uniformly from the set found by pair_pool fresh source
        # points: without replacement while n <= its size (every sample then a different pair, as theirs), and
        # through further fresh random orders beyond it (each pair used at most ceil(n / size) times).
        points = self.box.sample(self.pair_pool, generator, self.device)
        pairs = accepted_pairs(points, self.targets, self.potential, self.top_k, self.angle_threshold)
        if len(pairs) == 0:
            raise RuntimeError(f"TransportPrior: none of {self.pair_pool} source points found a pair within "
                               f"angle_threshold={self.angle_threshold}; raise the threshold")
        source = generator.device if generator is not None else pairs.device
        orders = [torch.randperm(len(pairs), generator=generator, device=source)
                  for _ in range(max(1, math.ceil(n / len(pairs))))]
        chosen = pairs[torch.cat(orders)[:n].to(pairs.device)]
        return pair_codes(chosen, self.targets, self.weight, generator)
