"""FlatGAN's geometry (Möllenhoff & Cremers 2019) as plain torch functions (no training logic).

Notation: a simple k-vector v = v_1∧…∧v_k is stored as its frame V, a tensor ``(B, *data_shape, k)`` (the k
vectors on the last axis); the pairing of two simple k-vectors is ⟨v, w⟩ = det(VᵀW) (the slides). A k-form
ω maps a point x and a frame V to the number ω(x)(v_1∧…∧v_k).

- :func:`determinant` and :func:`pairing`: the k×k determinant, closed form for k ≤ 3.
- :func:`haar_frames`: uniformly random orthonormal k-frames (Haar measure), vectorised QR.
- :func:`pushforward`: a generator's values and its tangents ∇_z g·e_i along the first k latent axes, by
  forward-mode differentiation batched over the k directions (differentiable for the generator update).
- :func:`exterior_derivative`: dη(v_0, …, v_k) = Σ_i (−1)^i D_x[η(·; v_0, …, v̂_i, …, v_k)]·v_i for constant
  vector fields, by forward-mode directional derivatives.
- :class:`FormAtPoints`: a form evaluated once at fixed points, shared by scores and penalties.
- :func:`comass_penalty`, :func:`exterior_penalty`: the soft flat-norm constraints ‖ω‖* ≤ λ and ‖dω‖* ≤ 1 at
  data points, squared hinges as in the authors' ``flatgan.py``.
- :class:`LatentCurrent`: the latent current S = e_1∧…∧e_k on the first k (uniform) latent coordinates.
- :func:`subspace_alignment`: principal-angle cosines between two k-planes (the equivariance score).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import jvp, vmap

from genzoo.ops.utils import eval_mode, full_precision

EXTERIOR_PENALTIES = ("bound", "exact")
NUISANCE_DISTRIBUTIONS = ("gaussian", "uniform")


# ---- pairing of simple k-vectors ---------------------------------------------------------------------------
def determinant(m: torch.Tensor) -> torch.Tensor:
    """det of a batch of k×k matrices ``(..., k, k)``: closed forms for k ≤ 3 (cheap, and their double
    derivatives are plain products), ``torch.linalg.det`` beyond."""
    k = m.shape[-1]
    if m.shape[-2] != k:
        raise ValueError(f"determinant needs square matrices, got shape {tuple(m.shape)}")
    if k == 0:
        return m.new_ones(m.shape[:-2])
    if k == 1:
        return m[..., 0, 0]
    if k == 2:
        return m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    if k == 3:
        a, b, c = m[..., 0, :], m[..., 1, :], m[..., 2, :]
        return (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
    return torch.linalg.det(m)


def pairing(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """⟨v_1∧…∧v_k, w_1∧…∧w_k⟩ = det(VᵀW) for frames ``(B, *shape, k)``: one number per sample."""
    if v.shape != w.shape:
        raise ValueError(f"frames differ in shape: {tuple(v.shape)} vs {tuple(w.shape)}")
    v, w = v.flatten(1, -2), w.flatten(1, -2)
    return determinant(v.transpose(1, 2) @ w)


def haar_frames(n: int, shape: Sequence[int], k: int, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` orthonormal k-frames in R^d (d = prod(shape)), Haar distributed: the QR factor Q of a Gaussian
    d×k matrix with the signs of R's diagonal moved into Q (without that fix Q is not uniform). Each frame
    is a uniformly random oriented k-plane with unit k-area. Returns ``(n, *shape, k)``."""
    d = math.prod(shape)
    if not 0 <= k <= d:
        raise ValueError(f"need 0 <= k <= d for k-frames in R^{d}, got k={k}")
    device = generator.device if generator is not None else device
    gaussian = torch.randn(n, d, k, generator=generator, device=device)
    q, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return (q * signs.unsqueeze(1)).view(n, *shape, k)


# ---- forward-mode derivatives ------------------------------------------------------------------------------
def pushforward(generator: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """g(z) and its tangents ∇_z g·e_i for i < k, shaped ``(B, *shape)`` and ``(B, *shape, k)``.

    One forward-mode pass batched (vmap) over the k directions: the primal is computed once, each tangent
    costs about one more forward pass. Reverse mode runs through it, so the generator loss is differentiable
    in the generator's parameters (the authors use two reverse passes per direction, "rop")."""
    if not 0 <= k <= z.shape[1]:
        raise ValueError(f"k={k} oriented directions do not fit a latent of size {z.shape[1]}")
    if k == 0:
        x = generator(z)
        return x, x.new_zeros(*x.shape, 0)
    directions = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)[:k]
    directions = directions.unsqueeze(1).expand(k, *z.shape)
    x, tangents = vmap(lambda t: jvp(generator, (z,), (t,)), out_dims=(None, 0))(directions)
    return x, tangents.movedim(0, -1)


@torch.no_grad()
def tangents_of(generator: torch.nn.Module, z: torch.Tensor, k: int,
                batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pushforward` for evaluation: eval mode, no graph, fp32, in chunks of ``batch_size``."""
    xs, tangents = [], []
    with eval_mode(generator), full_precision(z.device):
        for chunk in z.float().split(batch_size):
            x, t = pushforward(generator, chunk, k)
            xs.append(x.float())
            tangents.append(t.float())
    return torch.cat(xs), torch.cat(tangents)


def exterior_derivative(form: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                        frame: torch.Tensor) -> torch.Tensor:
    """dη(x)(v_0, …, v_k) = Σ_i (−1)^i D_x[η(·)(v_0, …, v̂_i, …, v_k)](x)·v_i for a k-form
    ``form(x, V)`` and a (k+1)-frame ``(B, *shape, k+1)`` of constant vectors (their Lie brackets vanish,
    so this is exact). The k+1 directional derivatives are one vmapped forward-mode pass."""
    m = frame.shape[-1]
    if m < 1 or frame.shape[:-1] != x.shape:
        raise ValueError(f"need a frame (B, *shape, k+1) for points {tuple(x.shape)}, got {tuple(frame.shape)}")
    directions = frame.movedim(-1, 0)  # (k+1, B, *shape)
    others = torch.stack([torch.cat([frame[..., :i], frame[..., i + 1:]], dim=-1) for i in range(m)])

    def derivative(direction: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        return jvp(lambda p: form(p, rest), (x,), (direction,))[1]

    derivatives = vmap(derivative)(directions, others)  # (k+1, B)
    signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=derivatives.dtype, device=derivatives.device)
    return (signs.unsqueeze(1) * derivatives).sum(0)


# ---- flat-norm penalties -----------------------------------------------------------------------------------
class FormAtPoints:
    """A mixed form ω = f + ω_k evaluated once at fixed points ``x``: the 0-form's values f(x) (differentiable
    in ``x``, for its input gradients) and the 1-forms' values Ω(x). ``self(frames)`` is ω(x)(frames) for any
    frames at those points. FlatGAN's critic step reads ω at the data points three times (the real scores,
    the comass penalty and the 0-form gradient of the dω bound): one evaluation serves all three."""

    def __init__(self, form, x: torch.Tensor) -> None:
        self.form, self.k = form, form.k
        self.points = x.detach().requires_grad_(True)
        self.zero_form_values = form.zero_form(self.points)
        self.one_form_values = form.one_form_values(self.points) if self.k else None

    def __call__(self, frames: torch.Tensor | None) -> torch.Tensor:
        if self.k == 0:
            return self.zero_form_values
        if frames is None:
            raise ValueError(f"a {self.k}-form needs {self.k} tangent vectors per sample")
        return self.zero_form_values + self.form.pair(frames, self.one_form_values)

    def zero_form_gradients(self) -> torch.Tensor:
        """∇f at the points, ``(B, d)``, differentiable (create_graph) for the penalty's own gradient."""
        (grads,) = torch.autograd.grad(self.zero_form_values.sum(), self.points, create_graph=True)
        return grads.flatten(1)


def comass_penalty(values: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """mean(max(|ω(x)(v)| − λ, 0)²) for ``values`` ω(x)(v) with one random unit k-vector v per point: a
    stochastic lower bound on the comass ‖ω(x)‖* (the sup over unit simple k-vectors), hinged at λ
    (``flatgan.py`` L91-96)."""
    return torch.relu(values.abs() - bound).square().mean()


def exterior_penalty(form, x: torch.Tensor, frames: torch.Tensor, variant: Literal["bound", "exact"] = "bound",
                     eps: float = 1e-12, at_points: FormAtPoints | None = None) -> torch.Tensor:
    """mean(max(‖dω(x)‖ − 1, 0)²) at the points ``x`` for a mixed form ω = f + ω_k
    (:class:`genzoo.nets.forms.DifferentialForm`), with a random (k+1)-frame per point.

    ``bound`` (the authors' choice, "closer to WGAN-GP"): |dω_k(v_0..v_k)| + (k+1)·mean_batch ‖∇f‖, an
    upper bound; the 0-form enters through its batch-mean gradient norm, a scalar (read from ``at_points``,
    ω already evaluated at ``x``, when given). ``exact``: the alternating sum over the whole mixed form,
    |Σ_i (−1)^i D_x[ω(·)(V_î)]·v_i| (for k = 0 that is |∇f·v_0|, for k ≥ 1 the 0-form contributes
    ∇f·Σ(−1)^i v_i), as ``use_bound=False`` in the authors' code."""
    if variant not in EXTERIOR_PENALTIES:
        raise ValueError(f"variant must be one of {EXTERIOR_PENALTIES}, got {variant!r}")
    k = form.k
    if variant == "exact":
        value = exterior_derivative(lambda p, v: form(p, v if k else None), x, frames).abs()
    else:
        grads = (at_points or FormAtPoints(form, x)).zero_form_gradients()
        value = (k + 1) * torch.sqrt(grads.square().sum(1) + eps).mean()
        if k:
            value = value + exterior_derivative(form.k_part, x, frames).abs()
    return torch.relu(value - 1.0).square().mean()


# ---- the latent current ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatentCurrent:
    """S = e_1∧…∧e_k on the first k latent coordinates, z_i ~ U(−r_i/2, r_i/2) with r = ``oriented_ranges``;
    the other coordinates are unoriented nuisance, N(0, 1) (``gaussian``, the authors' MNIST) or
    U(−r/2, r/2) with r = ``nuisance_range`` (``uniform``, their 2-D toy with r = 2π)."""

    latent_dim: int
    oriented_ranges: tuple[float, ...] = (15.0, 1.0)  # authors' MNIST: rotation, thickness
    nuisance: Literal["gaussian", "uniform"] = "gaussian"
    nuisance_range: float = 2 * math.pi

    def __post_init__(self) -> None:
        object.__setattr__(self, "oriented_ranges", tuple(float(r) for r in self.oriented_ranges))
        if len(self.oriented_ranges) > self.latent_dim:
            raise ValueError(f"{len(self.oriented_ranges)} oriented coordinates do not fit latent_dim="
                             f"{self.latent_dim}")
        if any(r <= 0 for r in self.oriented_ranges) or self.nuisance_range <= 0:
            raise ValueError(f"latent ranges must be > 0, got {self.oriented_ranges} and {self.nuisance_range}")
        if self.nuisance not in NUISANCE_DISTRIBUTIONS:
            raise ValueError(f"nuisance must be one of {NUISANCE_DISTRIBUTIONS}, got {self.nuisance!r}")

    @property
    def k(self) -> int:
        return len(self.oriented_ranges)

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        draw_on = generator.device if generator is not None else device
        if self.nuisance == "gaussian":
            z = torch.randn(n, self.latent_dim, generator=generator, device=draw_on)
        else:
            z = (torch.rand(n, self.latent_dim, generator=generator, device=draw_on) - 0.5) * self.nuisance_range
        if self.k:
            ranges = torch.tensor(self.oriented_ranges, device=draw_on)
            z[:, :self.k] = (torch.rand(n, self.k, generator=generator, device=draw_on) - 0.5) * ranges
        return z.to(device) if device is not None else z

    def traversal(self, base: torch.Tensor, i: int, steps: int) -> torch.Tensor:
        """For each row of ``base``, ``steps`` latents sweeping z_i over its range with the other oriented
        coordinates zeroed (as the authors' figures): ``(len(base) * steps, latent_dim)``, row-major."""
        if not 0 <= i < self.k:
            raise ValueError(f"coordinate {i} is not one of the {self.k} oriented ones")
        half = self.oriented_ranges[i] / 2
        z = base.repeat_interleave(steps, dim=0).clone()
        z[:, :self.k] = 0
        z[:, i] = torch.linspace(-half, half, steps, device=base.device).repeat(len(base))
        return z


# ---- equivariance ------------------------------------------------------------------------------------------
def subspace_alignment(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """How well span(a) matches span(b) for frames ``(N, *shape, k)``: the mean cosine of the k principal angles
    between the two planes (1: the same plane; invariant under changes of basis inside either plane), and
    the signed cosine between a_i and b_i for each i (which axis took which direction, and its orientation),
    averaged over the N samples. Returns ``(score, per_direction[k])``."""
    if a.shape != b.shape or a.shape[-1] < 1:
        raise ValueError(f"need two frames of one shape (N, *shape, k >= 1), got {tuple(a.shape)}, {tuple(b.shape)}")
    a, b = a.flatten(1, -2).double(), b.flatten(1, -2).double()
    qa, qb = torch.linalg.qr(a)[0], torch.linalg.qr(b)[0]
    principal = torch.linalg.svdvals(qa.transpose(1, 2) @ qb).clamp(0, 1)
    cosines = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
    return principal.mean(), cosines.mean(0)
