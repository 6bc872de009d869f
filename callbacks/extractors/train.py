"""Train the ``classifier`` feature extractor on a dataset and save it where ``classifier:<data>`` finds it.

    zoo train-extractor --data fashion_mnist --data_dir data [--out PATH] [--epochs N]
        [--batch_size B] [--lr LR] [--seed S] [--fid]

The classifier trains on the whole official training split (no validation hold-out: nothing is tuned on it)
and reports its accuracy on the test split. ``--fid`` adds the Frechet distance between the classifier features
of the training split and of the test split: the floor a perfect generative model's FID would sit near.
Progress goes to stderr; the last line on stdout is one JSON object with the results. ``python -m
genzoo.callbacks.extractors.train`` is the same command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genzoo.evaluation.extractors.classifier import (
    TRAINABLE_DATA,
    ClassifierExtractor,
    datamodule_tensors,
    default_checkpoint_path,
    fit_classifier,
    save_classifier,
)

DEFAULT_EPOCHS = {"fashion_mnist": 4, "mnist": 3, "cifar10": 15, "digits": 20}
DEFAULT_LR = 2e-3


def build_datamodule(data: str, data_dir: str, batch_size: int, download: bool = True):
    """The datamodule for ``data`` with no validation hold-out (the test split is unchanged: for Digits, the
    default ``val_size`` only moves samples between train and validation)."""
    import genzoo.datamodules

    if data not in TRAINABLE_DATA:
        raise ValueError(f"--data must be one of {TRAINABLE_DATA}, got {data!r}")
    return genzoo.datamodules.build_datamodule(data, data_dir=data_dir, batch_size=batch_size, val_size=0,
                                        download=download)


@torch.no_grad()
def extractor_features(extractor: ClassifierExtractor, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([extractor(images[start:start + batch_size], (0.0, 1.0)).cpu()
                      for start in range(0, len(images), batch_size)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zoo train-extractor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, choices=TRAINABLE_DATA, help="the dataset to train on")
    parser.add_argument("--data_dir", default="data", help="the datamodule's data_dir (unused for digits)")
    parser.add_argument("--out", default=None,
                        help="checkpoint path (default: $GENZOO_EXTRACTORS_DIR/<data>.pt, "
                             "GENZOO_EXTRACTORS_DIR defaulting to ~/.cache/genzoo/extractors)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default per dataset: {DEFAULT_EPOCHS})")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak Adam learning rate (cosine decay)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=32, help="channels of the first conv block")
    parser.add_argument("--feature_dim", type=int, default=128, help="width of the feature layer")
    parser.add_argument("--no_augment", action="store_true", help="train without random shifts/flips")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU training")
    parser.add_argument("--no_download", action="store_true", help="never try to download missing data")
    parser.add_argument("--fid", action="store_true",
                        help="also report the FID between the features of the train and the test split")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    epochs = args.epochs or DEFAULT_EPOCHS[args.data]
    out = Path(args.out).expanduser() if args.out else default_checkpoint_path(args.data)
    datamodule = build_datamodule(args.data, args.data_dir, args.batch_size, download=not args.no_download)
    datamodule.setup("fit")
    train_images, train_labels, test_images, test_labels = datamodule_tensors(datamodule)
    net, test_accuracy = fit_classifier(train_images, train_labels, test_images, test_labels, epochs=epochs,
                                        lr=args.lr, seed=args.seed, device=args.device, batch_size=args.batch_size,
                                        width=args.width, feature_dim=args.feature_dim, augment=not args.no_augment)
    save_classifier(out, net, args.data, test_accuracy)
    result = {"data": args.data, "path": str(out), "test_accuracy": round(test_accuracy, 4), "epochs": epochs,
              "seconds": round(time.perf_counter() - started, 1)}
    if args.fid:
        from genzoo.evaluation.metrics import frechet_distance

        extractor = ClassifierExtractor.from_file(out).to(next(net.parameters()).device)
        result["fid_train_test"] = round(float(frechet_distance(extractor_features(extractor, train_images),
                                                                extractor_features(extractor, test_images))), 4)
        result["n_train"], result["n_test"] = len(train_images), len(test_images)
        result["seconds"] = round(time.perf_counter() - started, 1)
    result["protocol"] = ClassifierExtractor.from_file(out).protocol()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
