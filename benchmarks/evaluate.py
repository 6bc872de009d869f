"""Evaluate any genzoo checkpoint with the evaluation suite; the last stdout line is one JSON object.

    python -m benchmarks.evaluate --ckpt runs/wgan_gp/fashion_mnist/checkpoints/last.ckpt \\
        --data fashion_mnist --data_dir data --extractor classifier:fashion_mnist --n 10000

The model class comes from the checkpoint (``--model`` overrides it for checkpoints written before genzoo
recorded it); the protocol is the training callback's (:class:`zoo.evaluation.Evaluator`), so the numbers
equal what ``eval/*`` logged for the same settings. ``--octave_beta training`` samples OC-GAN generators with
the β they were trained at instead of their ``eval_beta``; ``--sample_normalization minmax`` is FlexAE's protocol.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import torch

from datamodules import BY_NAME, build_datamodule
from zoo.checkpoints import read_checkpoint
from zoo.evaluation import METRICS, SAMPLE_NORMALIZATIONS, Evaluator, MetricOptions, default_cache_dir
from zoo.nets.octave import OctaveNormAct


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by `zoo fit`")
    parser.add_argument("--data", required=True, choices=sorted(BY_NAME), help="the real data to compare with")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--image_size", type=int, default=None,
                        help="for datamodules that resize (must match the model)")
    parser.add_argument("--extractor", default="inception", help="inception[:weights], vgg16[:weights], "
                        "classifier:<name or path>, pixels")
    parser.add_argument("--metrics", default="fid,kid,precision_recall,prd",
                        help=f"comma-separated, from {','.join(METRICS)}")
    parser.add_argument("--n", type=int, default=10_000, help="generated samples")
    parser.add_argument("--reference_split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--n_reference", type=int, default=10_000, help="real samples; 0 for the whole split")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache_dir", default=str(default_cache_dir()), help="reference-feature cache ('' for none)")
    parser.add_argument("--model", default=None,
                        help="model class path, e.g. zoo.wgan.WGANGP (default: recorded in the checkpoint)")
    parser.add_argument("--octave_beta", default="eval", choices=["eval", "training"],
                        help="OC-GAN generators built with eval_beta: sample with it (the authors' protocol) or with "
                             "the β they were trained at")
    parser.add_argument("--sample_normalization", default="none", choices=list(SAMPLE_NORMALIZATIONS),
                        help="minmax: rescale each sample to the value range first (FlexAE's protocol)")
    parser.add_argument("--kid_subsets", type=int, default=100)
    parser.add_argument("--kid_subset_size", type=int, default=1000)
    parser.add_argument("--prd_runs", type=int, default=10)
    parser.add_argument("--prd_clusters", type=int, default=20, help="PRD needs 10 samples per cluster in each set")
    return parser.parse_args(argv)


def load_model(path: str, class_path: str | None, device: str) -> torch.nn.Module:
    checkpoint = read_checkpoint(path)  # clear errors for missing, corrupt and foreign files
    class_path = class_path or checkpoint["zoo"].get("class_path")
    if not class_path:
        raise ValueError(f"{path} does not record its model class (an older checkpoint): pass --model, "
                         f"e.g. --model zoo.wgan.WGANGP")
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.load_from_checkpoint(path, map_location=device).eval()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = load_model(args.ckpt, args.model, args.device)
    if args.octave_beta == "training":
        for block in model.modules():
            if isinstance(block, OctaveNormAct):
                block.sample_with_training_beta()
    datamodule = build_datamodule(args.data, data_dir=args.data_dir, image_size=args.image_size,
                                  value_range=tuple(model.value_range))
    if tuple(datamodule.data_shape) != tuple(model.data_shape):
        raise ValueError(f"the model generates {tuple(model.data_shape)} but --data {args.data} yields "
                         f"{tuple(datamodule.data_shape)}; pass the training run's --image_size")
    options = MetricOptions(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                            prd_clusters=args.prd_clusters, prd_runs=args.prd_runs)
    evaluator = Evaluator(args.extractor, tuple(m for m in args.metrics.split(",") if m), args.n,
                          args.reference_split, args.n_reference or None, args.batch_size, args.seed,
                          args.cache_dir or None, options, args.sample_normalization)
    result = evaluator.evaluate(model, datamodule, torch.device(args.device))
    record = {"ckpt": args.ckpt, "data": args.data, **result.values, "seconds": round(result.seconds, 2),
              "protocol": result.protocol}
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
