"""Data with tangent vectors for FlatGAN (Möllenhoff & Cremers 2019): batches ``{"x": [B, C, H, W], "tangents":
[B, C, H, W, k], "label"?: ...}``, the ``k`` tangents stacked on a new last axis.

A tangent is the direction in which an image changes under a small transformation (rotation, stroke thickness,
translation, zoom, or time in a video); FlatGAN asks its generator's Jacobian to contain these directions.

- :func:`image_tangents` computes named tangents for a batch of images, all in torch (CPU or GPU), through the
  transforms in :data:`TANGENT_TRANSFORMS`.
- :class:`TangentImages` adds them to any image datamodule (``base``), cached per split or per sample, and
  exposes :meth:`TangentImages.tangents_at` to compute the same tangents at generated images.
- :func:`time_tangents` and :class:`MovingImages` give the time tangent of videos: a small generated dataset
  of digits (or Fashion-MNIST items) moving and bouncing on a canvas.

Conventions: images are ``[N, C, H, W]`` in ``value_range`` with the background at its low end. Differences are
central (``T(+step) - T(-step)``) and NOT divided by ``2 * step``: the per-tangent scale factor absorbs that,
as in the authors' code. Rotation is counter-clockwise positive on the displayed image (row 0 at the top); the
authors used ``rot(-1°) - rot(+1°)`` (clockwise), which is ours with a negative scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from genzoo.ops.utils import seeded

from .base import ZooDataModule
from .images import scale_unit_to_range, split_train_val_test, validate_split_size

CACHE_BATCH_SIZE = 512

# ----------------------------------------------------------------------------------------------------
# image transforms (pure, batched)


def affine_warp(x: torch.Tensor, theta: torch.Tensor | Sequence, background: float) -> torch.Tensor:
    """Bilinear warp of ``x`` [N, C, H, W]: each output pixel samples ``x`` at ``theta @ (u, v, 1)`` in
    ``grid_sample``'s normalised coordinates (``align_corners=False``); ``theta`` is ``[N, 2, 3]`` or one
    ``[2, 3]`` for all. Pixels from outside ``x`` get ``background``: ``x - background`` is sampled with zero
    padding, so edges fade into the background rather than into 0."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"affine_warp expects float images [N, C, H, W], got {x.dtype} of shape {tuple(x.shape)}")
    theta = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    if theta.dim() == 2:
        theta = theta.expand(len(x), 2, 3)
    if tuple(theta.shape) != (len(x), 2, 3):
        raise ValueError(f"theta must be [2, 3] or [{len(x)}, 2, 3], got {tuple(theta.shape)}")
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    shifted = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return shifted + background


def rotate(x: torch.Tensor, degrees: float, background: float) -> torch.Tensor:
    """``x`` rotated by ``degrees`` about the image centre, counter-clockwise on the displayed image (row 0 at
    the top), in pixel space (non-square images are not sheared)."""
    height, width = x.shape[-2:]
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    # output pixel p samples the input at R^-1 p; in normalised coordinates S^-1 R^-1 S with S = diag(W, H) / 2
    theta = [[c, -s * height / width, 0.0], [s * width / height, c, 0.0]]
    return affine_warp(x, theta, background)


def translate(x: torch.Tensor, dx: float, dy: float, background: float) -> torch.Tensor:
    """``x`` shifted by ``dx`` pixels to the right and ``dy`` pixels down (subpixel shifts interpolate)."""
    height, width = x.shape[-2:]
    theta = [[1.0, 0.0, -2.0 * dx / width], [0.0, 1.0, -2.0 * dy / height]]
    return affine_warp(x, theta, background)


def zoom(x: torch.Tensor, factor: float, background: float) -> torch.Tensor:
    """``x`` magnified by ``factor`` about the image centre (``factor < 1`` shrinks it)."""
    if factor <= 0:
        raise ValueError(f"zoom factor must be > 0, got {factor}")
    return affine_warp(x, [[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]], background)


def rotation_tangent(x: torch.Tensor, background: float, step: float = 1.0) -> torch.Tensor:
    """``rotate(x, +step) - rotate(x, -step)``, ``step`` in degrees (counter-clockwise positive)."""
    return rotate(x, step, background) - rotate(x, -step, background)


def thickness_tangent(x: torch.Tensor, background: float, step: float = 1.0) -> torch.Tensor:
    """``x - dilate(x)`` with a 3x3 grey dilation (max pool): points towards thinner strokes, as the authors'.
    ``background`` and ``step`` are unused (the signature is that of every transform)."""
    del background, step
    return x - F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def translation_x_tangent(x: torch.Tensor, background: float, step: float = 1.0) -> torch.Tensor:
    """``shift(+step) - shift(-step)`` horizontally, ``step`` in pixels, positive to the right."""
    return translate(x, step, 0.0, background) - translate(x, -step, 0.0, background)


def translation_y_tangent(x: torch.Tensor, background: float, step: float = 1.0) -> torch.Tensor:
    """``shift(+step) - shift(-step)`` vertically, ``step`` in pixels, positive downwards."""
    return translate(x, 0.0, step, background) - translate(x, 0.0, -step, background)


def scale_tangent(x: torch.Tensor, background: float, step: float = 0.01) -> torch.Tensor:
    """``zoom(1 + step) - zoom(1 - step)`` about the image centre."""
    return zoom(x, 1.0 + step, background) - zoom(x, 1.0 - step, background)


TANGENT_TRANSFORMS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "rotation": rotation_tangent,
    "thickness": thickness_tangent,
    "translation_x": translation_x_tangent,
    "translation_y": translation_y_tangent,
    "scale": scale_tangent,
}


def check_transformations(names: Sequence[str], scales: Sequence[float]) -> None:
    """Fail early (at construction, not at the first batch) on unknown names or mismatched scales."""
    if isinstance(names, str):
        raise ValueError(f"transformations must be a list of names, got the string {names!r}")
    if len(names) == 0:
        raise ValueError(f"at least one transformation is needed; known: {sorted(TANGENT_TRANSFORMS)}")
    unknown = [name for name in names if name not in TANGENT_TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown tangent transformation(s) {unknown}; known: {sorted(TANGENT_TRANSFORMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"transformations must not repeat, got {list(names)}")
    if len(scales) != len(names):
        raise ValueError(f"need one scale per transformation: {len(names)} transformations {list(names)} but "
                         f"{len(scales)} scales {list(scales)}")


def image_tangents(x: torch.Tensor, names: Sequence[str], scales: Sequence[float],
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """The named tangents of images ``x`` [N, C, H, W], each times its scale: ``[N, C, H, W, k]``. The
    background (what enters from outside the image) is ``value_range[0]``."""
    check_transformations(names, scales)
    if x.dim() != 4:
        raise ValueError(f"image_tangents expects images [N, C, H, W], got shape {tuple(x.shape)}")
    background = float(value_range[0])
    return torch.stack([float(scale) * TANGENT_TRANSFORMS[name](x, background)
                        for name, scale in zip(names, scales, strict=True)], dim=-1)


# ----------------------------------------------------------------------------------------------------
# tangents for any image datamodule


def collate_all(parts: list[Any]) -> Any:
    """Concatenates the per-batch values of one key: tensors along dim 0, lists (strings, ...) end to end."""
    if all(isinstance(part, torch.Tensor) for part in parts):
        return torch.cat(parts)
    return [item for part in parts for item in part]


class TangentDataset(Dataset):
    """``dataset``'s dict samples plus ``"tangents"`` ``[C, H, W, k]`` at each sample's ``"x"``.

    ``cache=True`` computes every tangent once here (batches of 512) and keeps samples and tangents in memory
    (images: ``N * C * H * W * (k + 1)`` floats, so 0.7 GB for Fashion-MNIST at 32x32 with two tangents);
    ``cache=False`` computes them per sample in :meth:`__getitem__`, in dataloader workers if there are any.
    Both give the same values."""

    def __init__(self, dataset: Dataset, transformations: Sequence[str], scales: Sequence[float],
                 value_range: tuple[float, float], cache: bool = True, num_workers: int = 0) -> None:
        check_transformations(transformations, scales)
        self.dataset = dataset
        self.transformations = list(transformations)
        self.scales = [float(scale) for scale in scales]
        self.value_range = value_range
        self.cached: dict[str, Any] | None = self.compute_all(num_workers) if cache else None

    def tangents(self, x: torch.Tensor) -> torch.Tensor:
        return image_tangents(x, self.transformations, self.scales, self.value_range)

    def compute_all(self, num_workers: int) -> dict[str, Any]:
        parts: dict[str, list[Any]] = {}
        for batch in DataLoader(self.dataset, batch_size=CACHE_BATCH_SIZE, num_workers=num_workers):
            batch = {**batch, "tangents": self.tangents(batch["x"])}
            for key, value in batch.items():
                parts.setdefault(key, []).append(value)
        return {key: collate_all(values) for key, values in parts.items()}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.cached is not None:
            return {key: values[index] for key, values in self.cached.items()}
        item = dict(self.dataset[index])
        item["tangents"] = self.tangents(item["x"].unsqueeze(0))[0]
        return item


class TangentImages(ZooDataModule):
    """Any image datamodule (``base``) with FlatGAN tangents: samples are ``base``'s plus ``"tangents"``
    ``[C, H, W, k]``, one per name in ``transformations`` (see :data:`TANGENT_TRANSFORMS`), each times its entry
    of ``scales``.

    ``data_shape``, ``value_range`` and the splits are ``base``'s; ``batch_size``, ``num_workers`` and ``seed``
    (shuffling) default to ``base``'s. ``cache=True`` computes a split's tangents once, when it is built;
    ``cache=False`` per sample (for datasets too large to hold in memory 1 + k times).

    The authors' MNIST setting (Möllenhoff & Cremers 2019): images resized to 32 and in [-1, 1], tangents
    ``["rotation", "thickness"]`` with scales ``[10, 0.05]`` (their rotation was clockwise: use -10 for it).
    In YAML: ``base: {class_path: genzoo.datamodules.FashionMNIST, init_args: {image_size: 32}}``."""

    def __init__(self, base: ZooDataModule,
                 transformations: list[str] = ["rotation", "thickness"],  # noqa: B006  (copied below)
                 scales: list[float] = [10.0, 0.05],  # noqa: B006  (copied below)
                 cache: bool = True, batch_size: int | None = None, num_workers: int | None = None,
                 seed: int | None = None) -> None:
        if not isinstance(base, ZooDataModule):
            raise ValueError(f"base must be a ZooDataModule (an image datamodule), got {type(base).__name__}")
        if len(base.data_shape) != 3:
            raise ValueError(f"TangentImages needs an image datamodule (data_shape [C, H, W]), but "
                             f"{type(base).__name__} has data_shape {tuple(base.data_shape)}")
        check_transformations(transformations, scales)
        super().__init__(data_dir=base.data_dir, batch_size=base.batch_size if batch_size is None else batch_size,
                         num_workers=base.num_workers if num_workers is None else num_workers,
                         seed=base.seed if seed is None else seed, value_range=base.value_range)
        self.base = base
        self.transformations = list(transformations)
        self.scales = [float(scale) for scale in scales]
        self.cache = cache

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.base.data_shape)

    def tangents_at(self, x: torch.Tensor) -> torch.Tensor:
        """The same tangents at arbitrary images ``x`` [N, C, H, W] (e.g. generated ones): ``[N, C, H, W, k]``."""
        return image_tangents(x, self.transformations, self.scales, self.value_range)

    def prepare_data(self) -> None:
        self.base.prepare_data()

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        self.base.setup("fit")
        wrapped = [None if split is None else
                   TangentDataset(split, self.transformations, self.scales, self.value_range, cache=self.cache,
                                  num_workers=self.num_workers)
                   for split in (self.base.train_set, self.base.val_set, self.base.test_set)]
        return wrapped[0], wrapped[1], wrapped[2]  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------
# time tangents


def time_tangents(video: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and forward-difference time tangents of videos ``[N, T, C, H, W]``: frames 0..T-2 of each
    sequence ``[N * (T - 1), C, H, W]`` and ``(frame[t + 1] - frame[t]) * scale`` ``[N * (T - 1), C, H, W, 1]``."""
    if video.dim() != 5 or video.shape[1] < 2:
        raise ValueError(f"time_tangents expects videos [N, T, C, H, W] with T >= 2, got shape {tuple(video.shape)}")
    frame_shape = video.shape[2:]
    frames = video[:, :-1].reshape(-1, *frame_shape)
    tangents = ((video[:, 1:] - video[:, :-1]) * scale).reshape(-1, *frame_shape).unsqueeze(-1)
    return frames, tangents


def reflect(position: torch.Tensor, room: float) -> torch.Tensor:
    """Positions folded into ``[0, room]`` as a point bouncing off both ends would be (a triangle wave)."""
    if room == 0:
        return torch.zeros_like(position)
    folded = position.remainder(2 * room)
    return torch.where(folded > room, 2 * room - folded, folded)


def paste(images: torch.Tensor, offsets: torch.Tensor, canvas_size: int) -> torch.Tensor:
    """Images ``[S, C, h, w]`` (background 0) drawn on a black square canvas with their top-left corner at the
    subpixel ``offsets`` ``[S, F, 2]`` (column, row): ``[S, F, C, canvas, canvas]``, bilinear. A translation by
    bilinear sampling keeps each image's total mass while it is fully inside the canvas."""
    num, frames = offsets.shape[:2]
    height, width = images.shape[-2:]
    pixels = torch.arange(canvas_size, dtype=torch.float64)
    offsets = offsets.double()
    # source pixel coordinate of each canvas pixel, then grid_sample's normalised coordinate (align_corners=False)
    cols = pixels.view(1, 1, 1, -1) - offsets[..., 0, None, None]
    rows = pixels.view(1, 1, -1, 1) - offsets[..., 1, None, None]
    grid = torch.stack(torch.broadcast_tensors((2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1), dim=-1)
    sources = images.repeat_interleave(frames, dim=0)
    drawn = F.grid_sample(sources, grid.reshape(num * frames, canvas_size, canvas_size, 2).to(images.dtype),
                          mode="bilinear", padding_mode="zeros", align_corners=False)
    return drawn.view(num, frames, *drawn.shape[1:])


class MovingSequences:
    """The source images, labels and per-frame offsets of all sequences; renders frames on demand (so a
    dataset of 60,000 sequences costs the source images, not its frames)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, offsets: torch.Tensor, canvas_size: int,
                 value_range: tuple[float, float]) -> None:
        self.images, self.labels, self.offsets = images, labels, offsets
        self.canvas_size = canvas_size
        self.value_range = value_range

    def __len__(self) -> int:
        return len(self.images)

    def frames(self, index: int, start: int = 0, count: int | None = None) -> torch.Tensor:
        """Frames ``start .. start + count - 1`` of sequence ``index`` in ``value_range``: ``[count, C, H, W]``."""
        if not 0 <= index < len(self):
            raise IndexError(f"sequence index {index} out of range for {len(self)} sequences")
        offsets = self.offsets[index, start:None if count is None else start + count]
        unit = paste(self.images[index:index + 1], offsets.unsqueeze(0), self.canvas_size)[0]
        return scale_unit_to_range(unit, self.value_range)


class MovingFramesDataset(Dataset):
    """Frames 0..T-2 of the sequences ``sequence_ids`` (sequence-major), each with its time tangent."""

    def __init__(self, sequences: MovingSequences, sequence_ids: Sequence[int], tangent_scale: float) -> None:
        self.sequences = sequences
        self.sequence_ids = list(sequence_ids)
        self.tangent_scale = tangent_scale
        self.steps = sequences.offsets.shape[1] - 1

    def __len__(self) -> int:
        return len(self.sequence_ids) * self.steps

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        sequence, t = self.sequence_ids[index // self.steps], index % self.steps
        pair = self.sequences.frames(sequence, t, 2)
        frames, tangents = time_tangents(pair.unsqueeze(0), self.tangent_scale)
        return {"x": frames[0], "tangents": tangents[0], "label": self.sequences.labels[sequence],
                "sequence": torch.tensor(sequence)}


class MovingImages(ZooDataModule):
    """Moving digits: each source image becomes a ``num_frames``-frame video on a black ``canvas_size``
    square, starting at a random position fully inside it and moving at a random constant velocity (each
    component uniform in ``[-max_speed, max_speed]`` px/frame) that bounces off the borders. Subpixel positions
    are drawn bilinearly. Samples are frames ``t`` = 0..T-2 with their time tangent:
    ``{"x": [1, H, W], "tangents": (frame[t+1] - frame[t]) * tangent_scale [1, H, W, 1], "label", "sequence"}``.

    ``source``: ``"digits"`` (scikit-learn's bundled 8x8 digits, offline, upscaled to 16x16 so they are
    visible) or ``"fashion_mnist"`` (the 28x28 training images in ``data_dir``, see
    :class:`~genzoo.datamodules.FashionMNIST`). ``num_sequences``: how many source images (a ``seed``-chosen subset;
    all by default). Splits are by whole sequences (``val_size``/``test_size``: counts or fractions of them), so
    test frames come from videos never seen in training. Everything is a function of ``seed``."""

    SOURCE_SIZES = {"digits": 16, "fashion_mnist": 28}
    DIGITS_MAX_PIXEL = 16.0

    def __init__(self, source: str = "digits", data_dir: str = "data", canvas_size: int = 32, num_frames: int = 8,
                 max_speed: float = 1.5, num_sequences: int | None = None, tangent_scale: float = 1.0,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), val_size: int | float = 0.05,
                 test_size: int | float = 0.05) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         value_range=value_range)
        if source not in self.SOURCE_SIZES:
            raise ValueError(f"source must be one of {sorted(self.SOURCE_SIZES)}, got {source!r}")
        if canvas_size < self.SOURCE_SIZES[source]:
            raise ValueError(f"canvas_size={canvas_size} is smaller than the {self.SOURCE_SIZES[source]}x"
                             f"{self.SOURCE_SIZES[source]} {source} images")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (a time tangent needs a next frame), got {num_frames}")
        if max_speed < 0:
            raise ValueError(f"max_speed must be >= 0, got {max_speed}")
        if num_sequences is not None and num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1 (or None for all source images), got {num_sequences}")
        validate_split_size(val_size, "val_size")
        validate_split_size(test_size, "test_size")
        self.source = source
        self.canvas_size = canvas_size
        self.num_frames = num_frames
        self.max_speed = max_speed
        self.num_sequences = num_sequences
        self.tangent_scale = tangent_scale
        self.val_size = val_size
        self.test_size = test_size
        self.sequences: MovingSequences | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1, self.canvas_size, self.canvas_size)

    def load_sources(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The source images ``[S, 1, h, w]`` in [0, 1] (background 0) and their labels."""
        if self.source == "digits":
            from sklearn.datasets import load_digits

            digits = load_digits()
            images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / self.DIGITS_MAX_PIXEL
            size = self.SOURCE_SIZES["digits"]
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
            return images, torch.as_tensor(digits.target, dtype=torch.long)
        from .images import FashionMNIST

        train = FashionMNIST(data_dir=self.data_dir, download=True).load_split(train=True)  # DataNotFoundError
        return train.data.float().unsqueeze(1) / 255.0, train.targets.long()

    def prepare_data(self) -> None:
        if self.source == "fashion_mnist":
            self.load_sources()  # downloads once per node

    def build_sequences(self) -> MovingSequences:
        images, labels = self.load_sources()
        total = len(images)
        count = total if self.num_sequences is None else self.num_sequences
        if count > total:
            raise ValueError(f"num_sequences={count} exceeds the {total} {self.source} source images")
        generator = seeded(self.seed)
        if count < total:
            chosen = torch.randperm(total, generator=generator)[:count]
            images, labels = images[chosen], labels[chosen]
        room = float(self.canvas_size - images.shape[-1])
        start = torch.rand(count, 1, 2, generator=generator, dtype=torch.float64) * room
        velocity = (torch.rand(count, 1, 2, generator=generator, dtype=torch.float64) * 2 - 1) * self.max_speed
        times = torch.arange(self.num_frames, dtype=torch.float64).view(1, -1, 1)
        offsets = reflect(start + velocity * times, room)  # [S, T, 2] (column, row) of the top-left corner
        return MovingSequences(images, labels, offsets, self.canvas_size, self.value_range)

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        self.sequences = self.build_sequences()
        # split the sequence indices, so that whole videos are held out
        splits = split_train_val_test(range(len(self.sequences)), self.val_size, self.test_size,
                                      self.split_generator())
        train, val, test = (None if split is None else
                            MovingFramesDataset(self.sequences, sorted(split.indices), self.tangent_scale)
                            for split in splits)
        return train, val, test  # type: ignore[return-value]

    def video(self, index: int) -> torch.Tensor:
        """All ``num_frames`` frames ``[T, 1, H, W]`` of sequence ``index`` (as in the samples' ``"sequence"``)."""
        if self.sequences is None:
            self.setup("fit")
        return self.sequences.frames(index)  # type: ignore[union-attr]
