"""``zoo evaluate``: the evaluation suite on a checkpoint or on any samples; stdout's last line is one JSON object.

    zoo evaluate --ckpt runs/wgan_gp/fashion_mnist/checkpoints/last.ckpt --data fashion_mnist --data_dir data \\
        --extractor classifier:fashion_mnist --n 10000
    zoo evaluate --samples generated/ --reference real_images/ --extractor inception --metrics fid,kid
    zoo evaluate --samples samples.npz --key arr_0 --data cifar10 --value_range 0,255

Samples (``--samples``): a folder of images (PNG/JPG/..., searched recursively, in name order), a ``.pt`` tensor
file (a tensor, or a dict holding ``--key`` or ``samples``) or an ``.npz``/``.npy`` array (the first array or
``--key``); NCHW, or NHWC for images. Their value range is ``--value_range LOW,HIGH`` or inferred: uint8 is
[0, 255], floats within [0, 1] are [0, 1] and within [-1, 1] are [-1, 1]; the JSON's ``protocol.samples`` says
which was used. Reference: a datamodule split (``--data NAME --reference_split``), a folder of images
(``--reference DIR``) or reference features saved by an earlier run (``--save_reference FILE``, then
``--reference FILE``; also ``GenerativeMetrics.save_reference``); the samples' shape must be the reference's.

With ``--ckpt`` the model class comes from the checkpoint (``--model`` overrides it for checkpoints written before
genzoo recorded it) and the protocol is the training callback's (:class:`genzoo.evaluation.Evaluator`), so the numbers
equal what ``eval/*`` logged for the same settings; ``zoo sample`` with the same ``--seed``/``--batch_size`` writes
the very samples this evaluates. ``--octave_beta training`` samples OC-GAN generators with the β they were trained
at instead of their ``eval_beta``; ``--sample_normalization minmax`` is FlexAE's protocol.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genzoo.checkpoints import load_plain
from genzoo.commands import default_device, load_model
from genzoo.evaluation import METRICS, SAMPLE_NORMALIZATIONS, Evaluator, MetricOptions, default_cache_dir
from genzoo.evaluation.torchmetric import (
    check_reference_features,
    load_reference_features,
    save_reference_features,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".pt", ".pth", ".npz", ".npy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from genzoo.datamodules import BY_NAME

    parser = argparse.ArgumentParser(prog="zoo evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="a checkpoint written by `zoo fit`")
    source.add_argument("--samples", help="a folder of images, or a .pt/.npz/.npy file of samples")
    reference = parser.add_mutually_exclusive_group(required=True)
    reference.add_argument("--data", choices=sorted(BY_NAME), help="the real data to compare with (a datamodule)")
    reference.add_argument("--reference", help="a folder of real images to compare with, or a reference-features file "
                           "(written by --save_reference or GenerativeMetrics.save_reference)")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--image_size", type=int, default=None,
                        help="for datamodules that resize (must match the samples)")
    parser.add_argument("--reference_split", default="train", choices=["train", "val", "test"],
                        help="with --data: the split to compare with")
    parser.add_argument("--key", default=None, help="--samples .npz/.pt: the array to read (default: the first)")
    parser.add_argument("--value_range", default=None,
                        help="--samples: LOW,HIGH of the sample values, e.g. 0,255 or =-1,1 (default: inferred)")
    parser.add_argument("--extractor", default="inception", help="inception[:weights], vgg16[:weights], "
                        "classifier:<name or path>, pixels")
    parser.add_argument("--metrics", default="fid,kid,precision_recall,prd",
                        help=f"comma-separated, from {','.join(METRICS)}")
    parser.add_argument("--n", type=int, default=None,
                        help="generated samples (default: 10000 from --ckpt, all of --samples)")
    parser.add_argument("--n_reference", type=int, default=10_000, help="real samples; 0 for the whole split")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--cache_dir", default=str(default_cache_dir()), help="reference-feature cache ('' for none)")
    parser.add_argument("--model", default=None,
                        help="--ckpt: model class path, e.g. genzoo.wgan.WGANGP (default: recorded in the checkpoint)")
    parser.add_argument("--octave_beta", default="eval", choices=["eval", "training"],
                        help="OC-GAN generators built with eval_beta: sample with it (the authors' protocol) or with "
                             "the β they were trained at")
    parser.add_argument("--sample_normalization", default="none", choices=list(SAMPLE_NORMALIZATIONS),
                        help="minmax: rescale each sample to the value range first (FlexAE's protocol)")
    parser.add_argument("--kid_subsets", type=int, default=100)
    parser.add_argument("--kid_subset_size", type=int, default=1000)
    parser.add_argument("--prd_runs", type=int, default=10)
    parser.add_argument("--prd_clusters", type=int, default=20, help="PRD needs 10 samples per cluster in each set")
    parser.add_argument("--prd_plot", default=None, help="write the PRD curve to this PNG (needs the prd metric)")
    parser.add_argument("--save_reference", default=None,
                        help="write the reference's features to this file, for later --reference FILE runs")
    args = parser.parse_args(argv)
    if args.prd_plot and "prd" not in args.metrics.split(","):
        parser.error("--prd_plot needs the prd metric in --metrics")
    if args.value_range is not None and args.ckpt:
        parser.error("--value_range describes --samples; a checkpoint's model knows its own")
    return args


# ---- samples ---------------------------------------------------------------------------------------------

class SampleSource:
    """Samples already generated, behind the model interface :class:`Evaluator` uses: the "latents" are sample
    indices, so the evaluator's protocol (batches, normalisation, metrics) runs unchanged on them."""

    def __init__(self, samples: torch.Tensor, value_range: tuple[float, float]) -> None:
        self.samples = samples
        self.value_range = value_range
        self.data_shape = tuple(samples.shape[1:])
        self.device = torch.device("cpu")

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if n > len(self.samples):
            raise ValueError(f"{n} samples asked for, {len(self.samples)} given")
        return torch.arange(n)

    def generate(self, indices: torch.Tensor) -> torch.Tensor:
        return self.samples[indices].float()


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    return files


def read_image_folder(folder: Path, channels: int | None = None) -> torch.Tensor:
    """Every image under ``folder`` as uint8 (N, C, H, W). Grey images (all channels equal, as PNGs written from
    one-channel tensors are) keep one channel when ``channels`` is 1 or, with ``channels=None``, when all are."""
    from genzoo.datamodules.images import load_rgb  # UnreadableImageError naming the file

    images, first = [], None
    for path in image_files(folder):
        array = np.asarray(load_rgb(str(path)))
        if first is None:
            first = (path, array.shape)
        elif array.shape != first[1]:
            raise ValueError(f"image {path} is {array.shape[1]}x{array.shape[0]} but {first[0]} is "
                             f"{first[1][1]}x{first[1][0]}: all images of {folder} must have one size")
        images.append(torch.from_numpy(array.copy()))
    stacked = torch.stack(images).permute(0, 3, 1, 2)  # N, 3, H, W
    grey = bool((stacked[:, :1] == stacked).all())
    return stacked[:, :1].contiguous() if grey and channels in (None, 1) else stacked


def read_array_file(path: Path, key: str | None) -> torch.Tensor:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if not arrays.files:
                raise ValueError(f"{path} holds no arrays")
            if key is not None and key not in arrays.files:
                raise ValueError(f"{path} has no array {key!r}; it has {arrays.files}")
            return torch.from_numpy(arrays[key or arrays.files[0]])
    content = load_plain(path, "samples file")
    if isinstance(content, dict):
        names = [k for k, v in content.items() if isinstance(v, torch.Tensor)]
        chosen = key or ("samples" if "samples" in names else names[0] if names else None)
        if chosen not in names:
            raise ValueError(f"{path} has no tensor {chosen!r}; it has {names}")
        content = content[chosen]
    elif key is not None:
        raise ValueError(f"{path} holds one tensor, not a dict: drop --key {key}")
    if not isinstance(content, torch.Tensor):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a tensor of samples")
    return content


def read_samples(path: str, key: str | None, channels: int | None) -> torch.Tensor:
    source = Path(path).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"samples {source} do not exist")
    if source.is_dir():
        return read_image_folder(source, channels)
    if source.suffix.lower() not in ARRAY_SUFFIXES:
        raise ValueError(f"samples {source}: expected a folder of images or a {'/'.join(ARRAY_SUFFIXES)} file")
    return read_array_file(source, key)


def parse_value_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--value_range must be LOW,HIGH (e.g. 0,255, or --value_range=-1,1), got {text!r}") from None
    if not high > low:
        raise ValueError(f"--value_range needs LOW < HIGH, got {text!r}")
    return low, high


def samples_value_range(samples: torch.Tensor, given: str | None, path: str) -> tuple[tuple[float, float], str]:
    """The samples' value range and how it was chosen (``given``, ``dtype`` or ``inferred`` from the values)."""
    if given is not None:
        return parse_value_range(given), "given"
    if samples.dtype == torch.uint8:
        return (0.0, 255.0), "dtype"
    if not samples.is_floating_point():
        raise ValueError(f"samples {path} are {samples.dtype}: pass --value_range LOW,HIGH")
    if not torch.isfinite(samples).all():
        raise ValueError(f"samples {path} hold non-finite values")
    low, high = float(samples.min()), float(samples.max())
    if low >= 0 and high <= 1:
        return (0.0, 1.0), "inferred"
    if low >= -1 and high <= 1:
        return (-1.0, 1.0), "inferred"
    raise ValueError(f"samples {path} span [{low:.4g}, {high:.4g}], neither [0, 1] nor [-1, 1]: pass "
                     "--value_range LOW,HIGH")


def match_layout(samples: torch.Tensor, expected: tuple[int, ...], path: str,
                 reference: str) -> tuple[torch.Tensor, str]:
    """The samples as (N, *expected): NCHW as they are, NHWC images permuted."""
    shape = tuple(samples.shape[1:])
    if shape == tuple(expected):
        return samples, "NCHW" if samples.dim() == 4 else "N..."
    if samples.dim() == 4 and len(expected) == 3 and shape == (expected[1], expected[2], expected[0]):
        return samples.permute(0, 3, 1, 2).contiguous(), "NHWC"
    raise ValueError(f"samples {path} have shape {shape} (N={len(samples)}) but the reference {reference} has "
                     f"{tuple(expected)}")


# ---- a folder of images as the reference -----------------------------------------------------------------

class ImageTensors(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class FolderReference:
    """A folder of real images as the evaluator's datamodule: every split is all of its images, uint8 in
    [0, 255]; ``identity`` (the reference cache's key) covers the files' names, sizes and modification times."""

    value_range = (0.0, 255.0)
    num_workers = 0

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"reference folder {self.root} does not exist")
        self.images = read_image_folder(self.root)
        self.train_set = self.val_set = self.test_set = ImageTensors(self.images)
        self.data_shape = tuple(self.images.shape[1:])

    def identity(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for path in image_files(self.root):
            stat = path.stat()
            digest.update(f"{path.relative_to(self.root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return {"class": f"{__name__}.{type(self).__name__}", "root": str(self.root.resolve()),
                "files": digest.hexdigest()[:16], "data_shape": list(self.data_shape)}


# ---- the command -------------------------------------------------------------------------------------------

class SavedReference:
    """Reference features saved earlier, standing in for a datamodule (only its ``data_shape`` is read); their
    protocol is checked against the evaluator's extractor by :meth:`check`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.features, self.data_shape, self.protocol = load_reference_features(path)
        if self.data_shape is None:
            raise ValueError(f"{path} does not record the shape of its samples: save it again with --save_reference")

    def check(self, evaluator: Evaluator, metrics: str) -> None:
        if evaluator.needs & {"train", "test", "reconstruction"}:
            raise ValueError(f"metrics {metrics} need datamodule splits; saved features ({self.path}) hold the "
                             "reference only")
        check_reference_features(self.path, self.features, self.protocol, evaluator.feature_extractor.protocol(),
                                 evaluator.keeps_pixels)


def reference_for(args: argparse.Namespace, value_range: tuple[float, float] | None) -> tuple[Any, str]:
    """The reference "datamodule" and its name for messages."""
    if args.reference and Path(args.reference).is_file():
        return SavedReference(args.reference), f"features {args.reference}"
    if args.reference:
        return FolderReference(args.reference), f"folder {args.reference}"
    from genzoo.datamodules import build_datamodule

    datamodule = build_datamodule(args.data, data_dir=args.data_dir, image_size=args.image_size,
                                  value_range=value_range)
    return datamodule, f"--data {args.data}"


def build_evaluator(args: argparse.Namespace, n: int) -> Evaluator:
    options = MetricOptions(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                            prd_clusters=args.prd_clusters, prd_runs=args.prd_runs)
    return Evaluator(args.extractor, tuple(m for m in args.metrics.split(",") if m), n, args.reference_split,
                     args.n_reference or None, args.batch_size, args.seed, args.cache_dir or None, options,
                     args.sample_normalization)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    record: dict[str, Any] = {}
    if args.ckpt:
        from genzoo.nets.octave import OctaveNormAct

        model = load_model(args.ckpt, args.model, args.device)
        if args.octave_beta == "training":
            for block in model.modules():
                if isinstance(block, OctaveNormAct):
                    block.sample_with_training_beta()
        datamodule, reference = reference_for(args, tuple(model.value_range))
        if tuple(datamodule.data_shape) != tuple(model.data_shape):
            raise ValueError(f"the model generates {tuple(model.data_shape)} but {reference} yields "
                             f"{tuple(datamodule.data_shape)}; pass the training run's --image_size")
        n = args.n if args.n is not None else 10_000
        record["ckpt"] = args.ckpt
        described = None
    else:
        raw = read_samples(args.samples, args.key, channels=None)
        value_range, chosen_by = samples_value_range(raw, args.value_range, args.samples)
        # a datamodule in the samples' range when it is a float one (the --ckpt protocol for `zoo sample` files)
        datamodule, reference = reference_for(args, value_range if value_range[1] <= 1 else None)
        expected = tuple(datamodule.data_shape)
        if Path(args.samples).is_dir() and raw.shape[1] != expected[0]:  # grey images kept as RGB, or not
            raw = read_samples(args.samples, args.key, channels=expected[0])
        samples, layout = match_layout(raw, expected, args.samples, reference)
        n = args.n if args.n is not None else len(samples)
        model = SampleSource(samples, value_range)
        record["samples"] = args.samples
        described = {"path": args.samples, "given": len(samples), "dtype": str(raw.dtype).removeprefix("torch."),
                     "value_range": list(value_range), "value_range_from": chosen_by, "layout": layout}
    record["data" if args.data else "reference"] = args.data or args.reference
    evaluator = build_evaluator(args, n)
    saved = None
    if isinstance(datamodule, SavedReference):
        datamodule.check(evaluator, args.metrics)
        saved = datamodule.features
    result = evaluator.evaluate(model, datamodule, torch.device(args.device), reference=saved)
    if args.save_reference:
        save_reference_features(args.save_reference, evaluator.last_reference, evaluator.feature_extractor.protocol(),
                                tuple(datamodule.data_shape))
        record["saved_reference"] = args.save_reference
    protocol = dict(result.protocol)
    if described is not None:
        protocol["samples"] = described
    record.update({**result.values, "seconds": round(result.seconds, 2), "protocol": protocol})
    if args.prd_plot and result.prd_curve is not None:
        from PIL import Image

        from genzoo.callbacks.evaluation import prd_plot

        Path(args.prd_plot).expanduser().parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(prd_plot(*(t.cpu() for t in result.prd_curve))).save(Path(args.prd_plot).expanduser())
        record["prd_plot"] = args.prd_plot
    print(json.dumps(record), flush=True)
    return record
