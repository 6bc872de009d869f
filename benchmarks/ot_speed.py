"""Speed of the semi-discrete OT solver (:mod:`genzoo.ops.ot`).

1. One Monte Carlo gradient evaluation (``SemiDiscreteOT.measures``: Sobol points, scores, block-wise argmax,
   counting) with M = 100·N source points, against the bare matrix products of the same shapes ([c, d] x [d, N]
   chunk by chunk into one reused buffer: no argmax, nothing kept), in the same run, the two timed in alternation
   (``--repeats`` rounds) so that a change in the machine's load hits both. Both are reported in GFLOP/s of the
   product (2·M·d·N); ``fraction`` = bare / MC time, best round of each (1 means argmax and counting are free);
   ``fraction_median`` the same from the median rounds.
   ``fraction`` compares like with like: the bare products use the solver's chunk, which the solver keeps whatever
   it costs the product (it is set by the score memory budget, and the ``random`` sampler's points depend on it).
   ``matmul_sweep_gflops`` times the bare products alone at a few chunk sizes (on ``--sweep_points`` points, best
   round) and ``fraction_vs_best_chunk`` = MC / the fastest of them: what the evaluation reaches against the best
   the product alone could do at any of those chunks.
2. Peak memory of the evaluation: CUDA's allocator peak, or on the CPU the growth of the process's peak RSS;
   bounded by the chunk (``chunk_mb``), never the M x N score matrix (``dense_scores_mb``).
3. Time to converge to the default tolerance (every cell within 5 %) for N = 1,000 and 10,000
   Gaussian codes in d dimensions, each within ``--budget`` seconds (``null`` with the steps done when not).

On a machine shared with other work the times swing by several times from minute to minute, and two intra-op
threads suffer more than one (every parallel region waits for a descheduled thread): ``load_avg`` records the
1-minute load average before and after, and ``--threads 1`` gives steadier figures.

    python -m benchmarks.ot_speed --n 10000 --d 64
    python -m benchmarks.ot_speed --n 10000 --d 64 --converge 1000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch

from genzoo.ops.ot import SemiDiscreteOT


def codes(n: int, d: int, seed: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).to(device)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def alternating(repeats: int, fns: dict) -> dict[str, list[float]]:
    """Each function timed ``repeats`` times, in turn (a, b, a, b, ...): a change in load hits every one."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return times


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


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds allowed per convergence run")
    parser.add_argument("--converge", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=None, help="source points per chunk (default: the solver's)")
    parser.add_argument("--samples", type=int, default=None, help="source points M (default: the solver's, 100 N)")
    parser.add_argument("--sweep_chunks", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096],
                        help="chunk sizes of the bare-product sweep (the solver's is added)")
    parser.add_argument("--sweep_points", type=int, default=None,
                        help="points per sweep run (default: M / 10, at least 4 of the largest chunks)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = load_average()

    targets = codes(args.n, args.d, args.seed, device)
    solver = SemiDiscreteOT(targets, seed=args.seed, chunk_size=args.chunk, num_samples=args.samples)
    solver.h = 0.01 * torch.randn(args.n, dtype=torch.float64, device=device)  # a non-trivial potential
    m = solver.num_samples  # 100 N
    flops = 2.0 * m * args.d * args.n
    memory = peak_mb(solver.measures, device)  # the first call also warms up
    bare_products(m, solver.chunk_size, targets)
    times = alternating(args.repeats, {"mc": solver.measures,
                                       "bare": lambda: bare_products(m, solver.chunk_size, targets)})
    mc_s, bare_s = min(times["mc"]), min(times["bare"])

    chunks = sorted({*args.sweep_chunks, solver.chunk_size})
    sweep_points = args.sweep_points or min(m, max(m // 10, 4 * chunks[-1]))
    sweep = alternating(args.repeats, {c: (lambda c=c: bare_products(sweep_points, c, targets)) for c in chunks})
    sweep_gflops = {str(c): round(2.0 * sweep_points * args.d * args.n / min(t) / 1e9, 1) for c, t in sweep.items()}
    best_chunk = max(sweep_gflops, key=sweep_gflops.get)
    mc_gflops = flops / mc_s / 1e9
    result = {"n": args.n, "d": args.d, "m": m, "chunk": solver.chunk_size, "device": str(device),
              "threads": torch.get_num_threads(), "mc_s": round(mc_s, 3), "matmul_s": round(bare_s, 3),
              "mc_gflops": round(mc_gflops, 1), "matmul_gflops": round(flops / bare_s / 1e9, 1),
              "fraction": round(bare_s / mc_s, 3),
              "fraction_median": round(statistics.median(times["bare"]) / statistics.median(times["mc"]), 3),
              "mc_rounds_s": [round(t, 3) for t in times["mc"]],
              "matmul_rounds_s": [round(t, 3) for t in times["bare"]],
              "matmul_sweep_gflops": sweep_gflops, "sweep_points": sweep_points, "best_chunk": int(best_chunk),
              "fraction_vs_best_chunk": round(mc_gflops / sweep_gflops[best_chunk], 3),
              "peak_mb": round(memory, 1),
              "chunk_mb": round(solver.chunk_size * (args.n + solver.block) * 4 / 2**20, 1),
              "dense_scores_mb": round(m * args.n * 4 / 2**20), "load_avg": [load_before, load_average()]}
    print(json.dumps(result), flush=True)
    result["converge_s"] = {}
    result["converge"] = {}
    for n in args.converge:
        run = converge(n, args.d, device, args.budget, args.seed)
        result["converge_s"][str(n)] = run["seconds"]
        result["converge"][str(n)] = run
        print(json.dumps({"converge": n, **run}), flush=True)
    result["load_avg"].append(load_average())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
