"""Speed and agreement of ``genzoo.evaluation.metrics`` against the straightforward reference implementations in
``tests.metric_references``, on synthetic Inception-like features, in one run:

* FID: ``frechet_distance`` (on ``--device``) against ``fid_reference`` (``scipy.linalg.sqrtm``).
* PRD: ``prd`` + ``prd_f_beta`` against ``prd_reference`` (scikit-learn ``MiniBatchKMeans``); the reference is
  run with ``--spread_seeds`` seeds to show its own run-to-run spread (only the first run is timed).
* Improved precision/recall: ``precision_recall`` (k = 3, chunked) against full N×N distance matrices, with our
  peak extra memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the peak-RSS growth, VmHWM reset before the
  call, of a fresh subprocess that loads the features and runs only ``precision_recall``).

Progress goes to stderr; the last stdout line is JSON::

    {"fid": {"ours_s", "reference_s", "speedup", "rel_diff"},
     "prd": {"ours_s", "reference_s", "speedup", "f8_diff", "f1_8_diff", "reference_spread"},
     "prc": {"ours_s", "reference_s", "max_abs_diff", "peak_mb"}, "device", "n", "dim"}

    python -m benchmarks.metric_speed [--n 10000 --dim 2048 --device cuda --spread_seeds 5 --threads 2] [--quick]

Run it from the repository root (it imports ``tests.metric_references``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genzoo.evaluation.metrics import frechet_distance, prd, prd_f_beta, precision_recall, squared_distances
from tests.metric_references import f_beta_pair_reference, fid_reference, prd_reference, precision_recall_reference

REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def inception_like_features(n: int, dim: int, seed: int, shift: float = 0.0, rank: int = 64, components: int = 10,
                            structure_seed: int = 0) -> torch.Tensor:
    """``(n, dim)`` float32 features that look like Inception pool3 activations: non-negative, strongly
    correlated, clustered. ReLU of a ``components``-Gaussian mixture in ``rank`` latent dimensions projected to
    ``dim`` plus a little isotropic noise (so the covariance has full rank). The mixture and the projection come
    from ``structure_seed`` (shared by the two sets of a comparison), the samples from ``seed``; ``shift`` moves
    every component's mean a little along a fixed random direction (a slightly-off generator)."""
    structure = np.random.default_rng(structure_seed)
    means = structure.normal(0.0, 1.5, (components, rank))
    scales = structure.uniform(0.5, 1.0, (components, rank))
    directions = structure.normal(0.0, 1.0, (components, rank))
    projection = structure.normal(0.0, 1.0 / np.sqrt(rank), (rank, dim))
    bias = structure.normal(-0.3, 0.3, dim)
    sample = np.random.default_rng(seed)
    labels = sample.integers(components, size=n)
    latent = means[labels] + shift * directions[labels] + scales[labels] * sample.standard_normal((n, rank))
    features = latent @ projection + bias + 0.1 * sample.standard_normal((n, dim))
    return torch.from_numpy(np.maximum(features, 0.0).astype(np.float32))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, *args, device: torch.device | None = None, **kwargs):
    if device is not None:
        synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if device is not None:
        synchronize(device)
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- FID

def bench_fid(real: torch.Tensor, fake: torch.Tensor, device: torch.device) -> dict:
    real_d, fake_d = real.to(device), fake.to(device)
    frechet_distance(real_d[:256, :64], fake_d[:256, :64])  # warm-up (CUDA context, cuSOLVER handles)
    ours, ours_s = timed(frechet_distance, real_d, fake_d, device=device)
    log(f"FID ours {ours:.6f} in {ours_s:.2f} s on {device}")
    reference, reference_s = timed(fid_reference, real.numpy(), fake.numpy())
    log(f"FID reference (scipy sqrtm) {reference:.6f} in {reference_s:.2f} s")
    return {"ours_s": ours_s, "reference_s": reference_s, "speedup": reference_s / ours_s,
            "rel_diff": abs(ours - reference) / abs(reference)}


# ---------------------------------------------------------------------------------------------- PRD

def bench_prd(real: torch.Tensor, fake: torch.Tensor, device: torch.device, spread_seeds: int) -> dict:
    (precision, recall), ours_s = timed(prd, fake.to(device), real.to(device), device=device)
    ours = prd_f_beta(precision, recall)
    log(f"PRD ours (F8, F1/8) = ({ours[0]:.4f}, {ours[1]:.4f}) in {ours_s:.2f} s")
    fake_np, real_np = fake.numpy(), real.numpy()
    references, reference_s = [], 0.0
    for seed in range(spread_seeds):
        (ref_precision, ref_recall), seconds = timed(prd_reference, fake_np, real_np, seed=seed)
        references.append(f_beta_pair_reference(ref_precision, ref_recall))
        reference_s = reference_s or seconds  # time only the first
        log(f"PRD reference seed {seed} (F8, F1/8) = ({references[-1][0]:.4f}, {references[-1][1]:.4f}) "
            f"in {seconds:.2f} s")
    references = np.array(references)  # (seeds, 2)
    mean = references.mean(0)
    spread = float((references.max(0) - references.min(0)).max())
    return {"ours_s": ours_s, "reference_s": reference_s, "speedup": reference_s / ours_s,
            "f8_diff": abs(ours[0] - float(mean[0])), "f1_8_diff": abs(ours[1] - float(mean[1])),
            "reference_spread": spread}


# ------------------------------------------------------------------------------- improved precision/recall

def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0: ``echo 5 > clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def prc_worker(real_path: str, fake_path: str, chunk_size: int, threads: int | None = None) -> None:
    """Run in a fresh process: load the features, warm up on a few rows, then time ``precision_recall`` and print
    JSON with its result and its peak extra memory = peak RSS during the call − RSS just before it.

    The peak comes from /proc/self/status VmHWM, reset just before the call. ``resource.getrusage``'s
    ``ru_maxrss`` can't be used: a child process starts with the max RSS of the parent it was forked from (the
    kernel carries the pre-exec high-water mark over), so in a benchmark whose parent holds gigabytes it reports
    the parent's peak, not the call's; it is printed alongside for comparison."""
    if threads:
        torch.set_num_threads(threads)
    real, fake = torch.from_numpy(np.load(real_path)), torch.from_numpy(np.load(fake_path))
    # warm-up: thread pools, BLAS buffers and the allocator's first growth to full-size distance blocks are
    # one-off costs of a fresh process, not of the call (they add ~100 MB to the first call at N = 10k, d = 2048)
    precision_recall(real[:64], fake[:64], chunk_size=chunk_size)
    squared_distances(real[:chunk_size], fake).kthvalue(4, dim=1)
    reset = _reset_peak_rss()
    rss_before, hwm_before = _proc_status_mb("VmRSS"), _proc_status_mb("VmHWM")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    start = time.perf_counter()
    result = precision_recall(real, fake, k=3, chunk_size=chunk_size)
    seconds = time.perf_counter() - start
    hwm_after = _proc_status_mb("VmHWM")
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result, "seconds": seconds, "peak_reset": reset, "rss_before_mb": rss_before,
                      "hwm_before_mb": hwm_before, "hwm_after_mb": hwm_after, "maxrss_before_mb": maxrss_before,
                      "maxrss_after_mb": maxrss_after, "peak_mb": hwm_after - rss_before}))


def bench_prc(real: torch.Tensor, fake: torch.Tensor, device: torch.device, chunk_size: int = 2048) -> dict:
    bound_mb = chunk_size * max(real.shape[0], fake.shape[0]) * 4 / 2 ** 20
    if device.type == "cuda":
        real_d, fake_d = real.to(device), fake.to(device)
        precision_recall(real_d[:64], fake_d[:64], chunk_size=chunk_size)
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        ours, ours_s = timed(precision_recall, real_d, fake_d, 3, chunk_size, device=device)
        peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
        how = "torch.cuda.max_memory_allocated minus the allocation before the call"
    else:
        with tempfile.TemporaryDirectory() as directory:
            real_path, fake_path = Path(directory, "real.npy"), Path(directory, "fake.npy")
            np.save(real_path, real.numpy())
            np.save(fake_path, fake.numpy())
            code = (f"from benchmarks.metric_speed import prc_worker; "
                    f"prc_worker({str(real_path)!r}, {str(fake_path)!r}, {chunk_size}, {torch.get_num_threads()})")
            completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                       check=True)
        worker = json.loads(completed.stdout.strip().splitlines()[-1])
        ours = {key: worker[key] for key in ("precision", "recall", "f_score")}
        ours_s, peak_mb = worker["seconds"], worker["peak_mb"]
        how = (f"peak RSS (VmHWM{', reset before the call' if worker['peak_reset'] else ''}) of a fresh subprocess "
               f"minus its RSS before the call ({worker['rss_before_mb']:.0f} -> {worker['hwm_after_mb']:.0f} MB; "
               f"getrusage max RSS, inherited from this parent: {worker['maxrss_before_mb']:.0f} -> "
               f"{worker['maxrss_after_mb']:.0f} MB)")
    log(f"P/R ours {ours['precision']:.4f} / {ours['recall']:.4f} in {ours_s:.2f} s; peak extra memory "
        f"{peak_mb:.0f} MB measured as {how}; analytical size of one distance block chunk_size x N x 4 B = "
        f"{bound_mb:.0f} MB (squared_distances holds ~4 such temporaries at its peak)")
    reference, reference_s = timed(precision_recall_reference, real.numpy(), fake.numpy(), 3)
    log(f"P/R reference {reference['precision']:.4f} / {reference['recall']:.4f} in {reference_s:.2f} s "
        f"(full float64 distance matrices, {3 * real.shape[0] * fake.shape[0] * 8 / 2 ** 20:.0f} MB for three "
        f"N x N blocks)")
    max_abs_diff = max(abs(ours[key] - reference[key]) for key in ("precision", "recall"))
    return {"ours_s": ours_s, "reference_s": reference_s, "max_abs_diff": max_abs_diff, "peak_mb": peak_mb}


# ---------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="samples per set (default 10000; --quick: 2000)")
    parser.add_argument("--dim", type=int, default=None, help="feature dimension (default 2048; --quick: 256)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--spread_seeds", type=int, default=None,
                        help="seeds of the PRD reference for its spread (default 5; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="a small run: n=2000, dim=256, spread_seeds=2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and for NumPy/scikit-learn's BLAS/OpenMP (default: their own "
                             "defaults); 1 avoids oversubscription on a CPU shared with other processes")
    args = parser.parse_args(argv)
    defaults = {"n": 2000, "dim": 256, "spread_seeds": 2} if args.quick else {"n": 10000, "dim": 2048,
                                                                             "spread_seeds": 5}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            with threadpool_limits(limits=args.threads):
                return run(args)
        finally:
            torch.set_num_threads(threads)
    return run(args)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    log(f"features: 2 x {args.n} x {args.dim} (Inception-like synthetic), device {device}, "
        f"{torch.get_num_threads()} CPU threads")
    real = inception_like_features(args.n, args.dim, seed=2 * args.seed + 1)
    fake = inception_like_features(args.n, args.dim, seed=2 * args.seed + 2, shift=0.3)
    result = {"fid": bench_fid(real, fake, device), "prd": bench_prd(real, fake, device, args.spread_seeds),
              "prc": bench_prc(real, fake, device), "device": str(device), "n": args.n, "dim": args.dim}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
