"""``zoo sample``: a checkpoint's samples as images, a grid or a tensor file; stdout's last line is one JSON object.

    zoo sample --ckpt runs/wgan_gp/digits/checkpoints/last.ckpt --n 1000 --out samples/        # PNGs + samples.pt
    zoo sample --ckpt ... --n 64 --out grid.png                                                 # one grid image
    zoo sample --ckpt ... --n 10000 --out samples.npz                                           # a tensor file

``--out`` a directory: one PNG per sample (``000000.png``, ...) and ``samples.pt`` (what ``zoo predict``
writes, without its grid); a ``.png`` path: a grid of all samples; a ``.pt``/``.npz``/``.npy`` path: the samples
as one tensor (NCHW, in the model's value range). The samples are the ones ``zoo evaluate --ckpt`` scores for the
same ``--seed`` and ``--batch_size``, so ``zoo evaluate --samples`` on the tensor file gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from genzoo.checkpoints import atomic_save
from genzoo.commands import default_device, load_model
from genzoo.evaluation.evaluator import generated_batches

TENSOR_SUFFIXES = (".pt", ".pth", ".npz", ".npy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by `zoo fit`")
    parser.add_argument("--n", type=int, default=64, help="how many samples")
    parser.add_argument("--out", required=True, help="a directory, a .png grid, or a .pt/.npz/.npy file")
    parser.add_argument("--seed", type=int, default=0, help="seeds the latents (zoo evaluate's --seed)")
    parser.add_argument("--batch_size", type=int, default=250, help="samples generated at a time")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--model", default=None,
                        help="model class path, e.g. genzoo.wgan.WGANGP (default: recorded in the checkpoint)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch_size < 1:
        parser.error(f"--n and --batch_size must be >= 1, got {args.n} and {args.batch_size}")
    return args


def write(samples: torch.Tensor, out: Path, value_range: tuple[float, float]) -> str:
    """Write ``samples`` to ``out``; returns what was written (``images``, ``grid`` or ``tensor``)."""
    from genzoo.callbacks.samples import write_sample_folder, write_sample_grid

    suffix = out.suffix.lower()
    if suffix == ".png":
        write_sample_grid(samples, out, value_range)
        return "grid"
    if suffix in TENSOR_SUFFIXES:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".npz":
            np.savez(out, samples=samples.numpy())
        elif suffix == ".npy":
            np.save(out, samples.numpy())
        else:
            atomic_save(samples, out)
        return "tensor"
    if out.suffix and not out.is_dir():
        raise ValueError(f"--out {out}: expected a directory, a .png grid or a {'/'.join(TENSOR_SUFFIXES)} file")
    write_sample_folder(samples, out, value_range, grid=False)
    return "images" if samples.dim() == 4 else "tensor"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = load_model(args.ckpt, args.model, args.device)
    with torch.no_grad():
        samples = torch.cat([x.detach().float().cpu()
                             for x in generated_batches(model, args.n, args.seed, args.batch_size)])
    out = Path(args.out).expanduser()
    value_range = tuple(float(v) for v in model.value_range)
    written = write(samples, out, value_range)
    record = {"ckpt": args.ckpt, "out": str(out), "written": written, "n": len(samples),
              "shape": list(samples.shape[1:]), "value_range": list(value_range), "seed": args.seed}
    print(json.dumps(record), flush=True)
    return record
