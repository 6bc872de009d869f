"""Speed of the semi-discrete OT solver (:mod:`genzoo.ops.ot`).

1. One Monte Carlo gradient evaluation (``SemiDiscreteOT.measures``: Sobol points, scores, block-wise argmax,
   counting) with M = 100·N source points, against the bare matrix products of the same shapes ([c, d] x [d, N]
   chunk by chunk into one reused buffer: no argmax, nothing kept), in the same run. Both are reported in
   GFLOP/s of the product (2·M·d·N); ``fraction`` = MC / bare (1 means argmax and counting are free).
2. Peak memory of the evaluation: CUDA's allocator peak, or on the CPU the growth of the process's peak RSS;
   bounded by the chunk (``chunk_mb``), never the M x N score matrix (``dense_scores_mb``).
3. Time to converge to the default tolerance (every cell within 5 % of its mass) for N = 1,000 and 10,000
   Gaussian codes in d dimensions, each within ``--budget`` seconds (``null`` with the steps done when not).

    python -m benchmarks.ot_speed --n 10000 --d 64
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from genzoo.ops.ot import SemiDiscreteOT


def codes(n: int, d: int, seed: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).to(device)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_products(points: int, chunk: int, targets: torch.Tensor) -> None:
    x = torch.rand(chunk, targets.shape[1], device=targets.device)
    table = targets.T.contiguous()
    out = torch.empty(chunk, len(targets), device=targets.device)
    for start in range(0, points, chunk):
        n = min(chunk, points - start)
        torch.mm(x[:n], table, out=out[:n])


def peak_mb(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def converge(n: int, d: int, device: torch.device, budget: float, seed: int) -> dict:
    solver = SemiDiscreteOT(codes(n, d, seed, device), seed=seed)
    start, stats = time.perf_counter(), {}
    while solver.step_count < solver.max_steps and time.perf_counter() - start < budget:
        stats = solver.step()
        if stats["error"] <= solver.tolerance:
            break
    seconds = time.perf_counter() - start
    done = bool(stats) and stats["error"] <= solver.tolerance
    return {"seconds": round(seconds, 2) if done else None, "steps": solver.step_count, "error": stats.get("error"),
            "empty_cells": stats.get("empty_cells"), "budget_s": budget}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds allowed per convergence run")
    parser.add_argument("--converge", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=None, help="source points per chunk (default: the solver's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    targets = codes(args.n, args.d, args.seed, device)
    solver = SemiDiscreteOT(targets, seed=args.seed, chunk_size=args.chunk)
    solver.h = 0.01 * torch.randn(args.n, dtype=torch.float64, device=device)  # a non-trivial potential
    m = solver.num_samples  # 100 N
    flops = 2.0 * m * args.d * args.n
    memory = peak_mb(solver.measures, device)  # the first call also warms up
    bare_products(m, solver.chunk_size, targets)
    mc_s = best_of(args.repeats, solver.measures)
    bare_s = best_of(args.repeats, lambda: bare_products(m, solver.chunk_size, targets))
    result = {"n": args.n, "d": args.d, "m": m, "chunk": solver.chunk_size, "device": str(device),
              "threads": torch.get_num_threads(), "mc_s": round(mc_s, 3), "matmul_s": round(bare_s, 3),
              "mc_gflops": round(flops / mc_s / 1e9, 1), "matmul_gflops": round(flops / bare_s / 1e9, 1),
              "fraction": round(bare_s / mc_s, 3), "peak_mb": round(memory, 1),
              "chunk_mb": round(solver.chunk_size * (args.n + solver.block) * 4 / 2**20, 1),
              "dense_scores_mb": round(m * args.n * 4 / 2**20)}
    print(json.dumps(result), flush=True)
    result["converge_s"] = {}
    result["converge"] = {}
    for n in args.converge:
        run = converge(n, args.d, device, args.budget, args.seed)
        result["converge_s"][str(n)] = run["seconds"]
        result["converge"][str(n)] = run
        print(json.dumps({"converge": n, **run}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
