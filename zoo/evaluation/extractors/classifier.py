"""The ``classifier`` feature extractor: the penultimate layer of a small CNN trained on the dataset itself.

Inception features are meaningless on 28x28 greyscale or 8x8 images; a classifier trained on the data (as in
the FID variants used for MNIST-like benchmarks) gives features that separate what matters there. The network
is :class:`ClassifierNet`; ``zoo train-extractor --data fashion_mnist`` trains one and saves it
to ``$GENZOO_EXTRACTORS_DIR/fashion_mnist.pt`` (default directory ``~/.cache/genzoo/extractors``), after which
``build_extractor("classifier:fashion_mnist")`` loads it. A spec argument that looks like a file path
(it exists, contains a path separator or ends in ``.pt``/``.pth``/``.ckpt``) is loaded directly.

Checkpoints are plain dicts loadable with ``torch.load(..., weights_only=True)``::

    {"format": "genzoo-classifier", "version": 1, "config": {in_channels, num_classes, image_size, width,
     feature_dim}, "state_dict": {...}, "data": "fashion_mnist", "test_accuracy": 0.91}
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from genzoo.checkpoints import atomic_save, load_plain
from genzoo.ops.utils import seeded

from .base import FeatureExtractor, file_sha256, register_extractor, to_unit_range

CHECKPOINT_FORMAT = "genzoo-classifier"
CHECKPOINT_VERSION = 1
CONFIG_KEYS = ("in_channels", "num_classes", "image_size", "width", "feature_dim")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
DEFAULT_EXTRACTORS_DIR = "~/.cache/genzoo/extractors"
EXTRACTORS_DIR_ENV = "GENZOO_EXTRACTORS_DIR"
TRAINABLE_DATA = ("fashion_mnist", "mnist", "cifar10", "digits")


# ----------------------------------------------------------------------------------------------------
# the network


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ClassifierNet(nn.Module):
    """A small CNN for small images (8x8 digits, 28x28 grey, 32x32 RGB).

    conv(w) -> pool -> conv(2w) -> conv(2w) -> pool -> conv(4w) -> global average pool -> fc(feature_dim) + ReLU
    (the features) -> fc(num_classes) (the logits). Inputs are images in [0, 1], normalised inside."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 32,
                 feature_dim: int = 128) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("image_size", image_size),
                            ("width", width), ("feature_dim", feature_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClassifierNet: {name} must be a positive int, got {value!r}")
        if num_classes < 2:
            raise ValueError(f"ClassifierNet: num_classes must be >= 2, got {num_classes}")
        if image_size < 4:
            raise ValueError(f"ClassifierNet: image_size must be >= 4, got {image_size}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.width = width
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            conv_block(in_channels, width), nn.MaxPool2d(2),
            conv_block(width, 2 * width), conv_block(2 * width, 2 * width), nn.MaxPool2d(2),
            conv_block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(4 * width, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def config(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in CONFIG_KEYS}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> (N, feature_dim) penultimate activations."""
        return self.embed(self.body((x - 0.5) / 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> (N, num_classes) logits."""
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------------
# checkpoints


def extractors_dir() -> Path:
    return Path(os.environ.get(EXTRACTORS_DIR_ENV) or DEFAULT_EXTRACTORS_DIR).expanduser()


def default_checkpoint_path(data_name: str) -> Path:
    """Where ``classifier:<data_name>`` is looked up and where the training command saves by default."""
    return extractors_dir() / f"{data_name}.pt"


def looks_like_path(argument: str) -> bool:
    return (Path(argument).expanduser().exists() or argument.lower().endswith(CHECKPOINT_SUFFIXES)
            or "/" in argument or os.sep in argument or argument.startswith("~"))


def resolve_checkpoint(argument: str) -> Path:
    """A checkpoint path, or a short data name resolved to ``$GENZOO_EXTRACTORS_DIR/<name>.pt``."""
    return Path(argument).expanduser() if looks_like_path(argument) else default_checkpoint_path(argument)


def train_command(path: Path, data_name: str | None = None) -> str:
    if data_name is None:
        data_name = path.stem if path.stem in TRAINABLE_DATA else "{" + ",".join(TRAINABLE_DATA) + "}"
    data_dir = "" if data_name == "digits" else " --data_dir DATA_DIR"  # where the datamodule finds its files
    return f"zoo train-extractor --data {data_name}{data_dir} --out {path}"


def save_classifier(path: str | Path, net: ClassifierNet, data_name: str, accuracy: float) -> Path:
    """Write ``net`` as a genzoo classifier checkpoint (atomically: a temporary file, then a rename)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": net.config,
        "state_dict": {key: value.detach().cpu().clone() for key, value in net.state_dict().items()},
        "data": str(data_name),
        "test_accuracy": float(accuracy),
    }
    return atomic_save(checkpoint, path)


def load_classifier(path: str | Path, data_name: str | None = None) -> tuple[ClassifierNet, dict]:
    """Load a checkpoint written by :func:`save_classifier`: ``(net in eval mode, {"data", "test_accuracy"})``.

    Raises FileNotFoundError (with the command that creates the file) when it is missing and ValueError
    naming the file when it is not a genzoo classifier checkpoint."""
    path = Path(path).expanduser()
    what = "classifier feature extractor"
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no checkpoint at {path}. Train one with: {train_command(path, data_name)}")
    checkpoint = load_plain(path, what)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{what}: {path} is not a genzoo classifier checkpoint (format {found!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}); create one with {train_command(path, data_name)}")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{what}: {path} has checkpoint version {checkpoint.get('version')!r}; this code reads "
                         f"version {CHECKPOINT_VERSION}")
    config, state_dict = checkpoint.get("config"), checkpoint.get("state_dict")
    if not isinstance(config, dict) or sorted(config) != sorted(CONFIG_KEYS):
        raise ValueError(f"{what}: {path} has a malformed config {config!r} (expected the keys {CONFIG_KEYS})")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{what}: {path} does not hold a state dict of tensors")
    if not isinstance(checkpoint.get("data"), str):
        raise ValueError(f"{what}: {path} does not name its training data")
    try:
        net = ClassifierNet(**config)
        net.load_state_dict(state_dict, strict=True)
    except (ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"{what}: {path} does not match its config {config}: {error}") from error
    accuracy = checkpoint.get("test_accuracy")
    meta = {"data": checkpoint["data"], "test_accuracy": float(accuracy) if accuracy is not None else float("nan")}
    return net.eval(), meta


# ----------------------------------------------------------------------------------------------------
# the extractor


@register_extractor("classifier")
class ClassifierExtractor(FeatureExtractor):
    """Penultimate features (``feature_dim``, 128 by default) of a :class:`ClassifierNet` trained on the data.

    Samples must have exactly the trained (C, H, W); they are mapped from ``value_range`` to [0, 1] (clamped)."""

    def __init__(self, net: ClassifierNet, data_name: str, weights_sha256: str = "unknown",
                 test_accuracy: float = float("nan"), path: str | Path | None = None) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.data_name = data_name
        self.weights_sha256 = weights_sha256
        self.test_accuracy = test_accuracy
        self.path = None if path is None else Path(path)
        self.dim = net.feature_dim
        self.train(False)

    @classmethod
    def from_file(cls, path: str | Path, data_name: str | None = None) -> ClassifierExtractor:
        net, meta = load_classifier(path, data_name)
        return cls(net, meta["data"], file_sha256(Path(path).expanduser()), meta["test_accuracy"], path)

    @classmethod
    def from_spec(cls, argument: str | None) -> ClassifierExtractor:
        if not argument:
            raise ValueError("the classifier extractor needs a data name or a checkpoint path, e.g. "
                             "'classifier:fashion_mnist' or 'classifier:/path/to/classifier.pt'")
        path = resolve_checkpoint(argument)
        return cls.from_file(path, None if looks_like_path(argument) else argument)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.net.input_shape

    @torch.no_grad()
    def features(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            expected = "x".join(map(str, self.input_shape))
            raise ValueError(f"classifier extractor trained on {self.data_name} expects samples of shape {expected} "
                             f"(N, {', '.join(map(str, self.input_shape))}), got a batch of shape {tuple(x.shape)}")
        device = next(self.net.parameters()).device
        return self.net.features(to_unit_range(x.to(device), value_range))

    def protocol(self) -> dict[str, str | int]:
        return {"extractor": "classifier", "weights": self.weights_sha256[:16], "dataset": self.data_name,
                "dim": self.dim, "input": f"{'x'.join(map(str, self.input_shape))} in [0,1]"}


# ----------------------------------------------------------------------------------------------------
# training


def dataset_tensors(dataset: Dataset, value_range: tuple[float, float], batch_size: int = 512,
                    num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All of a dict-sample dataset as ``(images in [0, 1], labels)`` tensors (one pass over its transforms)."""
    images, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        if "label" not in batch:
            raise ValueError("training a classifier needs a dataset whose samples carry a 'label'")
        images.append(to_unit_range(batch["x"], value_range))
        labels.append(torch.as_tensor(batch["label"]).long())
    if not images:
        raise ValueError("training a classifier needs a non-empty dataset")
    return torch.cat(images), torch.cat(labels)


def augment_batch(x: torch.Tensor, generator: torch.Generator, max_shift: int, flip: bool) -> torch.Tensor:
    """Random translations by up to ``max_shift`` pixels (zero padding) and, optionally, horizontal flips."""
    n, channels, height, width = x.shape
    if max_shift > 0:
        padded = F.pad(x, (max_shift,) * 4)
        dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        batch_index = torch.arange(n, device=x.device)[:, None, None, None]
        channel_index = torch.arange(channels, device=x.device)[None, :, None, None]
        x = padded[batch_index, channel_index, rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
             batch_size: int = 1000) -> float:
    was_training = net.training
    net.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = net(images[start:start + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    net.train(was_training)
    return correct / len(images)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def datamodule_tensors(datamodule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train images, train labels, test images, test labels)`` of a datamodule, images in [0, 1]; the test
    split is ``val_set`` when there is no ``test_set``."""
    if datamodule.train_set is None:
        datamodule.setup("fit")
    evaluation_set = datamodule.test_set if datamodule.test_set is not None else datamodule.val_set
    if evaluation_set is None:
        raise ValueError(f"{type(datamodule).__name__} has neither a test nor a validation split to evaluate on")
    workers = getattr(datamodule, "num_workers", 0)
    train_x, train_y = dataset_tensors(datamodule.train_set, datamodule.value_range, num_workers=workers)
    test_x, test_y = dataset_tensors(evaluation_set, datamodule.value_range, num_workers=workers)
    return train_x, train_y, test_x, test_y


def train_classifier(datamodule, epochs: int = 5, lr: float = 2e-3, seed: int = 0,
                     device: str | torch.device | None = "auto", **options) -> tuple[ClassifierNet, float]:
    """Train a :class:`ClassifierNet` on ``datamodule.train_set`` and return it (eval mode) with its accuracy on
    ``datamodule.test_set`` (``val_set`` if there is no test split). The splits are read into memory once, so
    the datamodule's transforms run once; ``options`` go to :func:`fit_classifier` (``batch_size`` defaults to
    the datamodule's)."""
    options.setdefault("batch_size", getattr(datamodule, "batch_size", 128))
    return fit_classifier(*datamodule_tensors(datamodule), epochs=epochs, lr=lr, seed=seed, device=device,
                          **options)


def fit_classifier(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   epochs: int = 5, lr: float = 2e-3, seed: int = 0, device: str | torch.device | None = "auto",
                   batch_size: int = 128, width: int = 32, feature_dim: int = 128, augment: bool = True,
                   weight_decay: float = 0.0, log: Callable[[str], None] | None = None) -> tuple[ClassifierNet, float]:
    """Train a :class:`ClassifierNet` on ``(N, C, H, H)`` images in [0, 1] with integer labels; returns the net
    (eval mode) and its accuracy on the test tensors.

    Adam with a linear warm-up then cosine decay to zero, seeded shuffling and (with ``augment``) random
    translations by up to ``max(1, H // 16)`` pixels (1 for 8x8 and 28x28, 2 for 32x32) plus horizontal flips
    for RGB images."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if log is None:
        def log(message: str) -> None:
            print(message, file=sys.stderr, flush=True)
    device = resolve_device(device)
    if train_x.ndim != 4 or train_x.shape[-1] != train_x.shape[-2]:
        raise ValueError(f"the classifier needs square images (N, C, H, H), got {tuple(train_x.shape)}")
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"train images {tuple(train_x.shape)} and test images {tuple(test_x.shape)} differ in shape")
    num_classes = int(max(train_y.max(), test_y.max()).item()) + 1
    channels, size = train_x.shape[1], train_x.shape[-1]

    torch.manual_seed(seed)
    generator = seeded(seed)
    net = ClassifierNet(channels, num_classes, size, width=width, feature_dim=feature_dim).to(device)
    batch_size = min(batch_size, len(train_x))
    steps_per_epoch = len(train_x) // batch_size
    total_steps = epochs * steps_per_epoch
    warmup = max(1, min(total_steps // 20, 500))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    max_shift = max(1, size // 16) if augment else 0
    flip = augment and channels == 3
    net.train()
    for epoch in range(epochs):
        started, total_loss = time.perf_counter(), 0.0
        order = torch.randperm(len(train_x), generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * batch_size:(step + 1) * batch_size]
            x = train_x[index].to(device)
            x = augment_batch(x, generator, max_shift, flip)
            loss = F.cross_entropy(net(x), train_y[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
        log(f"classifier epoch {epoch + 1}/{epochs}: loss {total_loss / steps_per_epoch:.4f}, "
            f"test accuracy {accuracy(net, test_x, test_y, device):.4f} ({time.perf_counter() - started:.1f} s)")
    net.eval()
    return net, accuracy(net, test_x, test_y, device)
