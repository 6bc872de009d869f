"""Semi-discrete optimal transport (Lei, An, Guo et al. 2020, §4; the AE-OT solver), independent of Lightning.

Source μ: uniform on a box Ω = [low, high]^d. Targets y_1..y_N with weights ν. The Brenier potential is
u_h(x) = max_i ⟨x, y_i⟩ + h_i; its cells W_i(h) = {x : i is the argmax} have measures w_i(h) = μ(W_i). The
convex energy E(h) = E_μ[u_h(x)] − ⟨h, ν⟩ has gradient ∇E = w(h) − ν (the paper's Eq. 23/26, up to a
constant), so minimising it makes every cell carry its target's mass; T(x) = y_argmax is then the OT map.

w(h) is a Monte Carlo estimate: the fraction of M source points whose argmax is i. Scores are computed in
chunks of source points, so peak memory is O(chunk x N) whatever M is; within a chunk the argmax is taken
block-wise (a vectorised max over blocks of targets, then an argmax inside the winning block), which costs
little beside the matrix product: the product covers the N real targets only (the padding of the last block
is preset in the reused score buffer), blocks are whole multiples of the vectorised max's loop, the source points
are made a batch of chunks at a time, and nothing is allocated per chunk. What is left beside the product is one
read of the scores (the block maxima, about 1/10 of the product's time on the CPU) and work on one block per row.
With ``torch.distributed`` initialised every rank scores its share of the same point set and the counts are
all-reduced, so the estimate equals a single process using all the points.

Generation: the authors' singularity-aware extension of T (pyOMT demo1/demo2): a source point's top-k cells
give pairs (own cell, runner-up); a pair whose supporting planes meet at a dihedral angle above a threshold
straddles the singular set (the gap between data modes) and is rejected; an accepted pair yields a point on
the segment between the two codes. :func:`extended_codes` gives one code per source point (its best accepted
pair); :func:`accepted_pairs` and :func:`pair_codes` give the authors' one code per distinct accepted pair.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch.quasirandom import SobolEngine

from genzoo.checkpoints import atomic_save, load_plain

Sampler = Literal["sobol", "scrambled_sobol", "random"]
SAMPLERS = ("sobol", "scrambled_sobol", "random")
#: scores held at once: chunk_size x N (padded) values, 32 MiB in float32
SCORE_BUDGET = 2**23
#: source points drawn at once: whole chunks of (d + 1) values, at most this many values (2 MiB in float32) unless
#: one chunk is larger; drawing a batch instead of a chunk changes no point, only the number of calls
POINT_BUDGET = 2**19


def _box(low: float | torch.Tensor, high: float | torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    for name, bound in (("low", low), ("high", high)):
        if torch.as_tensor(bound).numel() not in (1, dim):
            raise ValueError(f"the source box's {name} has {torch.as_tensor(bound).numel()} coordinates, but the "
                             f"targets have dimension {dim}: give one number or {dim}")
    low = torch.as_tensor(low, dtype=torch.float64).reshape(-1).expand(dim).clone()
    high = torch.as_tensor(high, dtype=torch.float64).reshape(-1).expand(dim).clone()
    if not bool((high > low).all()):
        raise ValueError(f"the source box needs high > low in every coordinate, got low={low.tolist()[:4]}..., "
                         f"high={high.tolist()[:4]}...")
    return low, high


def _mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash`` of strings)."""
    key = 0x9E3779B97F4A7C15
    for value in values:
        key = (key ^ (int(value) & 0xFFFF_FFFF_FFFF_FFFF)) * 0x100000001B3 & 0xFFFF_FFFF_FFFF_FFFF
    return key & 0x7FFF_FFFF_FFFF_FFFF


class UniformBox:
    """The source measure: uniform on ``[low, high]^d``, sampled chunk by chunk, reproducibly.

    ``sobol``: unscrambled Sobol points, the same set at every step (the authors' choice: a fixed quasi-random
    set whose counts the solver can match exactly); ``scrambled_sobol``: a fresh Owen-scrambled Sobol set per
    step (randomised QMC, unbiased); ``random``: fresh pseudo-random points per step."""

    def __init__(self, dim: int, low: float | torch.Tensor = -0.5, high: float | torch.Tensor = 0.5,
                 sampler: Sampler = "sobol", seed: int = 0) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if dim > SobolEngine.MAXDIM and sampler != "random":
            raise ValueError(f"Sobol points exist up to dimension {SobolEngine.MAXDIM}; use sampler='random'")
        self.dim, self.sampler, self.seed = int(dim), sampler, int(seed)
        self.low, self.high = _box(low, high, dim)

    def chunks(self, num_points: int, chunk_size: int, step: int, device: torch.device, dtype: torch.dtype,
               shard: tuple[int, int] = (0, 1)) -> Iterator[torch.Tensor]:
        """This shard's chunks ``rank, rank + world, ...`` of the ``num_points`` points of ``step``, each as a
        ``[n, d + 1]`` tensor whose last column is 1 (so scores are one matrix product with ``[y, h]``).

        The points are made a batch of whole chunks at a time (at most ``POINT_BUDGET`` values): one Sobol draw,
        one copy to the device and one affine map per batch instead of per chunk. The points are the same as
        chunk by chunk: the Sobol sequence is walked in order, and each pseudo-random chunk has its own generator
        (seeded by its index) filling a view of its own shape. A yielded chunk is a view of a reused buffer, valid
        until the next one is asked for."""
        rank, world = shard
        low = self.low.to(device, dtype)
        width = (self.high - self.low).to(device, dtype)
        engine = None
        if self.sampler != "random":
            scramble = self.sampler == "scrambled_sobol"
            engine = SobolEngine(self.dim, scramble=scramble, seed=_mix_seed(self.seed, step) if scramble else None)
        num_chunks = math.ceil(num_points / chunk_size)
        per_batch = max(1, min(num_chunks, POINT_BUDGET // ((self.dim + 1) * chunk_size)))
        out = torch.empty(per_batch * chunk_size, self.dim + 1, device=device, dtype=dtype)
        out[:, -1] = 1
        for first in range(0, num_chunks, per_batch):
            start = first * chunk_size
            stop = min(num_points, (first + per_batch) * chunk_size)
            mine = [(index, index * chunk_size - start, min(stop, (index + 1) * chunk_size) - start)
                    for index in range(first, math.ceil(stop / chunk_size)) if index % world == rank]
            if engine is not None:  # every rank walks the whole sequence; drawing costs ~1/N of scoring
                out[: stop - start, :-1].copy_(engine.draw(stop - start))
            else:
                for index, a, b in mine:
                    generator = torch.Generator(device=device).manual_seed(_mix_seed(self.seed, step, index))
                    out[a:b, :-1].uniform_(generator=generator)
            if world == 1:
                out[: stop - start, :-1].mul_(width).add_(low)
            else:  # only this rank's chunks hold points
                for _, a, b in mine:
                    out[a:b, :-1].mul_(width).add_(low)
            for _, a, b in mine:
                yield out[a:b]

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``n`` pseudo-random points (for generation), drawn on the generator's device."""
        source = generator.device if generator is not None else (device or torch.device("cpu"))
        unit = torch.rand(n, self.dim, generator=generator, device=source, dtype=dtype)
        return (self.low.to(source, dtype) + unit * (self.high - self.low).to(source, dtype)).to(device or source)


@dataclass
class ArgmaxSpace:
    """Buffers for :meth:`ScoreTable.argmax` on up to ``rows`` rows, reused from chunk to chunk."""

    block_max: torch.Tensor  # [rows, blocks]
    best_block: torch.Tensor  # [rows]
    row_start: torch.Tensor  # [rows]: row r's first block in the [rows x blocks, block] view of the scores, r·blocks
    flat_block: torch.Tensor  # [rows]: the winning block in that view
    winner: torch.Tensor  # [rows, block]: each row's winning block
    values: torch.Tensor  # [rows]
    index: torch.Tensor  # [rows]


class ScoreTable:
    """Targets augmented for scoring: columns ``[y_i, h_i]`` padded to whole blocks with rows that never win,
    so that ``x_aug @ table`` gives ⟨x, y_i⟩ + h_i and the block-wise argmax needs no ragged edge. Into a
    :meth:`buffer` only the N real columns are computed: its padding holds the padding's score from the start."""

    def __init__(self, targets: torch.Tensor, potential: torch.Tensor, block: int) -> None:
        n, d = targets.shape
        self.num_targets, self.block = n, block
        self.num_blocks = math.ceil(n / block)
        padded = self.num_blocks * block
        table = torch.zeros(d + 1, padded, device=targets.device, dtype=targets.dtype)
        table[:d, :n] = targets.T
        table[d, :n] = potential.to(targets.dtype)
        table[d, n:] = torch.finfo(targets.dtype).min / 4  # finite: no inf·0 = NaN inside the product
        self.table = table

    def buffer(self, rows: int) -> torch.Tensor:
        """A [rows, padded] score buffer for :meth:`scores`, its padding columns already filled."""
        out = torch.empty(rows, self.table.shape[1], device=self.table.device, dtype=self.table.dtype)
        out[:, self.num_targets:] = self.table[-1, self.num_targets:]  # x·0 + pad: what the product would give
        return out

    def scores(self, points: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[n, padded] scores of the augmented ``points``; with ``out`` (a :meth:`buffer`) the product covers the
        N real columns only (the padding's share of the work is saved; each score is the same) and the scores are
        its first n rows."""
        if out is None:
            return torch.mm(points, self.table)
        n = self.num_targets
        torch.mm(points, self.table[:, :n], out=out[: len(points), :n])
        return out[: len(points)]

    def workspace(self, rows: int) -> ArgmaxSpace:
        """Buffers for :meth:`argmax` on up to ``rows`` rows."""
        device, dtype = self.table.device, self.table.dtype
        return ArgmaxSpace(block_max=torch.empty(rows, self.num_blocks, device=device, dtype=dtype),
                           best_block=torch.empty(rows, device=device, dtype=torch.long),
                           row_start=torch.arange(0, rows * self.num_blocks, self.num_blocks, device=device),
                           flat_block=torch.empty(rows, device=device, dtype=torch.long),
                           winner=torch.empty(rows, self.block, device=device, dtype=dtype),
                           values=torch.empty(rows, device=device, dtype=dtype),
                           index=torch.empty(rows, device=device, dtype=torch.long))

    def argmax(self, scores: torch.Tensor, out: ArgmaxSpace | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(max value, first index of the max) per row, via block maxima: the vectorised max over blocks
        does the heavy pass, the index search copies one block per row (a row gather of the [rows x blocks, block]
        view, a plain copy, many times faster than an element-wise gather). ``scores``: contiguous [rows, padded]
        as :meth:`scores` gives them. With ``out`` (a :meth:`workspace`) nothing is allocated and the results are
        views of its buffers."""
        n = len(scores)
        space = self.workspace(n) if out is None else out
        blocks = scores.view(n * self.num_blocks, self.block)
        block_max = torch.amax(blocks, dim=1, out=space.block_max[:n].view(-1)).view(n, self.num_blocks)
        best = torch.argmax(block_max, dim=1, out=space.best_block[:n])
        flat = torch.add(space.row_start[:n], best, out=space.flat_block[:n])
        winner = torch.index_select(blocks, 0, flat, out=space.winner[:n])
        values, within = torch.max(winner, dim=1, out=(space.values[:n], space.index[:n]))
        return values, within.add_(best, alpha=self.block)


def _choose_block(num_targets: int) -> int:
    """About 2·sqrt(N), a multiple of 64 (64 to 256): the max over blocks is a vectorised reduction whose blocks
    must be whole multiples of the vector loop, else a scalar tail per block makes it several times slower (on an
    AVX-512 CPU, float32: 0.11 ns a score for blocks of 64, 128, 192 or 256; 0.13 for 200; 0.92 for 63)."""
    return 64 * max(1, min(4, round(2 * math.sqrt(num_targets) / 64)))


def default_chunk_size(num_targets: int) -> int:
    return max(64, min(4096, SCORE_BUDGET // max(num_targets, 1)))


def _shard() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class SolveResult:
    """What :meth:`SemiDiscreteOT.solve` reports; ``error`` is max_i |w_i − ν_i| / ν_i (N·max|w − ν| for
    uniform ν), ``empty_cells`` the cells no source point fell into."""

    converged: bool
    steps: int
    error: float
    grad_norm: float
    empty_cells: int
    num_samples: int
    lr: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class SemiDiscreteOT:
    """Minimise the semi-discrete OT energy by Adam on h with Monte Carlo gradients (the authors' solver,
    ``pyOMT_raw.py``, made adaptive).

    Per step: estimate w(h) on ``num_samples`` source points; Adam on h (``bias_correction=False`` is the
    authors' update); re-centre h (the energy is invariant to adding a constant). Stop when
    max_i |w_i − ν_i| / ν_i ≤ ``tolerance``. When neither ‖∇E‖₂ nor (on the fixed ``sobol`` set) the energy has
    improved for ``patience`` steps, the step size
    is multiplied by ``lr_decay`` (down to ``min_lr``); with fresh points every step (``random``,
    ``scrambled_sobol``) the sample count also doubles (up to ``max_samples``), as the authors do, since there the
    plateau is Monte Carlo noise; the fixed ``sobol`` set doubles only once the step is at ``min_lr``.
    Un-bias-corrected Adam moves every h_i by about ``lr`` per step, so the step must shrink to the spacing of
    nearby codes (the AE-OT notes §2.7: a fixed 2e-2 on the 25-mode grid stalls with hundreds of empty cells).

    Defaults: ``num_samples`` 100·N (the paper), ``lr`` 1e-2 × the score spread (box width × the codes' RMS
    distance to their mean), ``min_lr`` 1e-6 of that (codes of one mode can be 1e-3 apart, their
    cells thin slabs that an h error of lr·spacing empties), ``max_samples`` 16 × ``num_samples``.
    """

    def __init__(self, targets: torch.Tensor, weights: torch.Tensor | None = None,
                 low: float | torch.Tensor = -0.5, high: float | torch.Tensor = 0.5, sampler: Sampler = "sobol",
                 num_samples: int | None = None, max_samples: int | None = None, chunk_size: int | None = None,
                 lr: float | None = None, lr_decay: float = 0.5, min_lr: float | None = None, patience: int = 30,
                 betas: tuple[float, float] = (0.9, 0.999), bias_correction: bool = True,
                 tolerance: float = 0.05, max_steps: int = 20_000, seed: int = 0,
                 dtype: torch.dtype | str = torch.float32, device: torch.device | str | None = None) -> None:
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if targets.ndim != 2 or len(targets) < 1:
            raise ValueError(f"targets must be shaped (N, d) with N >= 1, got {tuple(targets.shape)}")
        if not bool(torch.isfinite(targets).all()):
            raise ValueError("targets contain NaN or inf (did the encoder diverge?)")
        n, d = targets.shape
        device = torch.device(device) if device is not None else targets.device
        self.targets = targets.detach().to(device, dtype)
        if weights is None:
            weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (n,) or bool((weights <= 0).any()) or not math.isclose(float(weights.sum()), 1.0,
                                                                                       rel_tol=1e-6):
            raise ValueError(f"weights must be N={n} positive numbers summing to 1")
        self.weights = weights.to(device)
        self.source = UniformBox(d, low, high, sampler, seed)
        scale = float((self.source.high - self.source.low).mean()) * float(
            (self.targets.double() - self.targets.double().mean(0)).pow(2).sum(1).mean().sqrt().clamp_min(1e-12))
        self.lr0 = float(lr) if lr is not None else 1e-2 * scale
        self.min_lr = float(min_lr) if min_lr is not None else min(self.lr0, 1e-6 * scale)
        self.num_samples0 = int(num_samples) if num_samples is not None else 100 * n
        self.max_samples = int(max_samples) if max_samples is not None else 16 * self.num_samples0
        checks = (("lr", self.lr0 > 0), ("min_lr", 0 < self.min_lr <= self.lr0), ("lr_decay", 0 < lr_decay < 1),
                  ("patience", patience >= 1), ("num_samples", self.num_samples0 >= 1),
                  ("max_samples", self.max_samples >= self.num_samples0), ("tolerance", tolerance > 0),
                  ("max_steps", max_steps >= 0), ("betas", 0 <= betas[0] < 1 and 0 <= betas[1] < 1))
        for name, ok in checks:
            if not ok:
                raise ValueError(f"SemiDiscreteOT: invalid {name} (lr={lr}, min_lr={min_lr}, lr_decay={lr_decay}, "
                                 f"patience={patience}, num_samples={num_samples}, max_samples={max_samples}, "
                                 f"tolerance={tolerance}, max_steps={max_steps}, betas={betas})")
        self.chunk_size = int(chunk_size) if chunk_size is not None else default_chunk_size(n)
        self.block = _choose_block(n)
        self.lr_decay, self.patience, self.betas = float(lr_decay), int(patience), tuple(betas)
        self.bias_correction, self.tolerance, self.max_steps = bool(bias_correction), float(tolerance), max_steps
        self.dtype = dtype
        self.reset()

    # ---- state --------------------------------------------------------------------------------------------
    @property
    def num_targets(self) -> int:
        return len(self.targets)

    @property
    def device(self) -> torch.device:
        return self.targets.device

    def reset(self) -> None:
        n = self.num_targets
        self.h = torch.zeros(n, device=self.device, dtype=torch.float64)
        self.adam_m = torch.zeros_like(self.h)
        self.adam_v = torch.zeros_like(self.h)
        self.step_count = 0
        self.num_samples = self.num_samples0
        self.lr = self.lr0
        self.best_grad_norm = self.best_energy = math.inf
        self.bad_steps = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed solve needs, plus a fingerprint of the problem it belongs to."""
        return {"h": self.h.cpu(), "adam_m": self.adam_m.cpu(), "adam_v": self.adam_v.cpu(),
                "step": self.step_count, "num_samples": self.num_samples, "lr": self.lr,
                "best_grad_norm": self.best_grad_norm, "best_energy": self.best_energy, "bad_steps": self.bad_steps,
                "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("fingerprint") != self.fingerprint():
            raise ValueError("this OT solver state belongs to a different problem (targets, weights, source box "
                             "or sampler differ); start a fresh solve")
        for name in ("h", "adam_m", "adam_v"):
            if not torch.is_tensor(state.get(name)) or state[name].shape != (self.num_targets,):
                raise ValueError(f"this OT solver state's {name} is not a vector of the {self.num_targets} targets' "
                                 f"length (got {getattr(state.get(name), 'shape', None)})")
        self.h = state["h"].to(self.device, torch.float64)
        self.adam_m = state["adam_m"].to(self.device, torch.float64)
        self.adam_v = state["adam_v"].to(self.device, torch.float64)
        self.step_count, self.num_samples = int(state["step"]), int(state["num_samples"])
        self.lr, self.bad_steps = float(state["lr"]), int(state["bad_steps"])
        self.best_grad_norm, self.best_energy = float(state["best_grad_norm"]), float(state["best_energy"])

    def fingerprint(self) -> str:
        """A hash of the problem: targets, weights, box, sampler, seed (and chunking, which fixes the
        pseudo-random points)."""
        digest = hashlib.sha256()
        for tensor in (self.targets, self.weights, self.source.low, self.source.high):
            digest.update(tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
        chunking = self.chunk_size if self.source.sampler == "random" else 0  # Sobol sets ignore the chunking
        digest.update(f"{self.source.sampler}/{self.source.seed}/{chunking}".encode())
        return digest.hexdigest()

    # ---- the energy and its gradient ---------------------------------------------------------------------
    @torch.no_grad()
    def measures(self, h: torch.Tensor | None = None, num_samples: int | None = None,
                 step: int | None = None) -> tuple[torch.Tensor, float]:
        """(w(h), E(h)): Monte Carlo cell measures [N] (float64) and the energy E(h) = mean max score − ⟨h, ν⟩,
        on the point set of ``step`` (default: the current one)."""
        h = self.h if h is None else h.to(self.device, torch.float64)
        m = self.num_samples if num_samples is None else int(num_samples)
        step = self.step_count if step is None else step
        table = ScoreTable(self.targets, h, self.block)
        counts = torch.zeros(self.num_targets, device=self.device, dtype=torch.long)
        score_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        buffer = table.buffer(self.chunk_size)
        space = table.workspace(self.chunk_size)
        ones = torch.ones(self.chunk_size, device=self.device, dtype=torch.long)
        for points in self.source.chunks(m, self.chunk_size, step, self.device, self.dtype, _shard()):
            values, index = table.argmax(table.scores(points, buffer), out=space)
            counts.index_add_(0, index, ones[: len(index)])  # in place (no N-long count per chunk); exact
            score_sum += values.sum(dtype=torch.float64)
        if _shard()[1] > 1:
            dist.all_reduce(counts)
            dist.all_reduce(score_sum)
        w = counts.double() / m
        return w, float(score_sum) / m - float(h @ self.weights)

    def gradient(self, h: torch.Tensor | None = None) -> torch.Tensor:
        """∇E(h) = w(h) − ν."""
        return self.measures(h)[0] - self.weights

    def energy(self, h: torch.Tensor | None = None) -> float:
        return self.measures(h)[1]

    # ---- optimisation ---------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One Adam step on h; returns the statistics of the gradient it used. When that gradient is already
        within the tolerance, h is left as it is (``"converged": True``)."""
        stats = self.statistics()
        g = stats.pop("gradient")
        if stats["converged"]:  # h already solves the problem: keep the potential that was checked
            return stats
        beta1, beta2 = self.betas
        self.adam_m.mul_(beta1).add_(g, alpha=1 - beta1)
        self.adam_v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat, v_hat = self.adam_m, self.adam_v
        if self.bias_correction:
            t = self.step_count + 1
            m_hat, v_hat = m_hat / (1 - beta1 ** t), v_hat / (1 - beta2 ** t)
        self.h -= self.lr * m_hat / (v_hat.sqrt() + 1e-8)
        self.h -= self.h @ self.weights  # re-centre: E is invariant under h + c
        self.step_count += 1
        self._adapt(stats["grad_norm"], stats["energy"])
        return stats

    def statistics(self) -> dict[str, Any]:
        """Statistics of ∇E at the current h (``"gradient"``: ∇E itself; :meth:`step` reports the rest)."""
        w, energy = self.measures()
        g = w - self.weights
        error = float((g.abs() / self.weights).max())
        stats = {"step": self.step_count, "error": error, "grad_norm": float(g.norm()),
                 "empty_cells": int((w == 0).sum()), "energy": energy, "lr": self.lr,
                 "num_samples": self.num_samples, "converged": error <= self.tolerance}
        return {**stats, "gradient": g}

    def _adapt(self, grad_norm: float, energy: float) -> None:
        fixed_points = self.source.sampler == "sobol"
        # While empty cells fill, ‖g‖ stalls but the energy still falls: that is progress, not a plateau.
        energy_fell = fixed_points and energy < self.best_energy - 1e-12 * abs(energy)
        if grad_norm < self.best_grad_norm or energy_fell:
            self.best_grad_norm = min(grad_norm, self.best_grad_norm)
            self.best_energy = min(energy, self.best_energy) if fixed_points else math.inf
            self.bad_steps = 0
            return
        self.bad_steps += 1
        if self.bad_steps < self.patience:
            return
        self.bad_steps, self.best_grad_norm, self.best_energy = 0, math.inf, math.inf
        if not fixed_points or self.lr <= self.min_lr:
            self.num_samples = min(self.max_samples, 2 * self.num_samples)
        self.lr = max(self.min_lr, self.lr * self.lr_decay)

    def solve(self, max_steps: int | None = None, callback: Callable[[dict[str, float]], None] | None = None,
              checkpoint: str | Path | None = None, checkpoint_every: int = 100) -> SolveResult:
        """Step until the tolerance or ``max_steps`` total steps. With ``checkpoint``, the state is saved there
        every ``checkpoint_every`` steps and a saved state of the same problem is resumed from first (one of
        another problem is overwritten, with a warning)."""
        max_steps = self.max_steps if max_steps is None else max_steps
        rank = _shard()[0]
        if checkpoint is not None and Path(checkpoint).is_file():
            self._resume_from(Path(checkpoint))
        start, history, stats = time.perf_counter(), [], None
        while self.step_count < max_steps:
            stats = self.step()
            history.append(stats)
            if callback is not None:
                callback(stats)
            if stats["converged"]:
                break
            if checkpoint is not None and rank == 0 and self.step_count % checkpoint_every == 0:
                atomic_save(self.state_dict(), checkpoint)
        if stats is None or not stats["converged"]:  # report the final h, not the one before the last step
            stats = self.statistics()
        if checkpoint is not None and rank == 0:
            atomic_save(self.state_dict(), checkpoint)
        return SolveResult(converged=stats["error"] <= self.tolerance, steps=self.step_count,
                           error=stats["error"], grad_norm=stats["grad_norm"], empty_cells=stats["empty_cells"],
                           num_samples=self.num_samples, lr=self.lr, seconds=time.perf_counter() - start,
                           history=history)


    def _resume_from(self, path: Path) -> None:
        """Continue from a saved state of this problem. The file only saves time, so one that is unreadable or
        belongs to another problem (another seed, more training) is reported and overwritten by a fresh solve."""
        try:
            state = load_plain(path, "OT solver state")
            if not isinstance(state, dict):
                raise ValueError(f"OT solver state {path} is not a solver state dict")
            if state.get("fingerprint") != self.fingerprint():
                raise ValueError(f"OT solver state {path} holds the state of another OT problem")
            self.load_state_dict(state)
        except ValueError as error:
            self.reset()
            warnings.warn(f"{error}; solving from scratch and overwriting it", stacklevel=3)


# ---- the transport map and its singularity-aware extension ---------------------------------------------------
@torch.no_grad()
def top_cells(points: torch.Tensor, targets: torch.Tensor, potential: torch.Tensor, k: int = 1,
              chunk_size: int | None = None) -> torch.Tensor:
    """Indices [n, k] of the k highest ⟨x, y_i⟩ + h_i per point, best first, chunked over points."""
    if points.ndim != 2 or points.shape[1] != targets.shape[1]:
        raise ValueError(f"points must be shaped (n, {targets.shape[1]}), got {tuple(points.shape)}")
    if potential.shape != (len(targets),):
        raise ValueError(f"the potential has shape {tuple(potential.shape)}, but there are {len(targets)} targets: "
                         "one value per target is needed")
    k = min(k, len(targets))
    chunk_size = chunk_size or default_chunk_size(len(targets))
    points = points.to(targets.device, targets.dtype)
    out = [(chunk @ targets.T + potential.to(targets.dtype)).topk(k, dim=1).indices
           for chunk in points.split(chunk_size)]
    return torch.cat(out)


def plane_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dihedral angles (radians) between the supporting planes of codes ``a`` and ``b`` [..., d]: the angle
    between their normals (y, −1)/‖(y, −1)‖ in R^{d+1}, as in the authors' code (h does not enter)."""
    a, b = a.double(), b.double()
    dot = (a * b).sum(-1) + 1
    norms = ((a * a).sum(-1) + 1).sqrt() * ((b * b).sum(-1) + 1).sqrt()
    return torch.arccos((dot / norms).clamp(-1.0, 1.0))


@torch.no_grad()
def extended_codes(points: torch.Tensor, targets: torch.Tensor, potential: torch.Tensor, top_k: int = 2,
                   angle_threshold: float = 0.75, weight: float | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The singularity-aware map on source ``points``: returns (codes [n, d], accepted [n] bool).

    A point's own cell i0 is paired with its runner-up cells i1..i_{k-1} in rank order; the first pair whose
    dihedral angle is at most ``angle_threshold`` is used, and the code is (1 − t)·y_i0 + t·y_j with t ~ U(0, 1)
    (``weight=None``, demo1's rule) or t = ``weight`` (demo2 uses 0.75). Points all of whose pairs are
    rejected get their own code y_i0 and ``accepted=False``; ``top_k=1`` is the plain map T(x) = y_i0."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1] or None (uniform), got {weight}")
    ranked = top_cells(points, targets, potential, top_k)
    own = targets[ranked[:, 0]]
    if ranked.shape[1] == 1:
        return own.clone(), torch.ones(len(points), dtype=torch.bool, device=own.device)
    runners = targets[ranked[:, 1:]]  # [n, k-1, d]
    ok = plane_angles(own.unsqueeze(1), runners) <= angle_threshold
    accepted = ok.any(dim=1)
    first = ok.double().argmax(dim=1)  # the highest-ranked accepted runner-up
    partner = runners[torch.arange(len(points), device=own.device), first]
    if weight is None:
        t = torch.rand(len(points), 1, generator=generator,
                       device=generator.device if generator is not None else own.device).to(own)
    else:
        t = torch.full((len(points), 1), float(weight), dtype=own.dtype, device=own.device)
    t = torch.where(accepted.unsqueeze(1), t, torch.zeros_like(t))
    return own + t * (partner - own), accepted


@torch.no_grad()
def accepted_pairs(points: torch.Tensor, targets: torch.Tensor, potential: torch.Tensor, top_k: int = 2,
                   angle_threshold: float = 0.75, chunk_size: int = 4096) -> torch.Tensor:
    """The distinct pairs of cells that source ``points`` accept, as rows (i, j) with i < j, sorted: each
    point's own cell paired with every runner-up among its ``top_k`` cells whose dihedral angle is at most
    ``angle_threshold``. This is the authors' ``gen_P`` candidate set: demo1 (top-2, the adjacent pairs) and
    demo2 (top-20). A pair is unordered: demo2 sorts it, and its weight then goes toward the larger index."""
    if top_k < 2:
        raise ValueError(f"pairs need top_k >= 2 (own cell and a runner-up), got {top_k}")
    ranked = top_cells(points, targets, potential, top_k)
    found = [torch.zeros(0, 2, dtype=torch.long, device=targets.device)]
    for chunk in ranked.split(chunk_size):  # the gathered codes are chunk x (k - 1) x d
        own, runners = chunk[:, :1].expand(-1, chunk.shape[1] - 1), chunk[:, 1:]
        ok = plane_angles(targets[own], targets[runners]) <= angle_threshold
        found.append(torch.stack([torch.minimum(own, runners)[ok], torch.maximum(own, runners)[ok]], dim=1))
    return torch.unique(torch.cat(found), dim=0)


def pair_codes(pairs: torch.Tensor, targets: torch.Tensor, weight: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Codes (1 − t)·y_i + t·y_j for pairs rows (i, j): t ~ U(0, 1) per pair (``weight=None``, demo1) or
    t = ``weight`` (demo2's 0.75, toward the larger index j when pairs come from :func:`accepted_pairs`)."""
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1] or None (uniform), got {weight}")
    first, second = targets[pairs[:, 0]], targets[pairs[:, 1]]
    if weight is None:
        t = torch.rand(len(pairs), 1, generator=generator,
                       device=generator.device if generator is not None else first.device).to(first)
    else:
        t = torch.full((len(pairs), 1), float(weight), dtype=first.dtype, device=first.device)
    return first + t * (second - first)
