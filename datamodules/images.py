"""Image datamodules: MNIST, Fashion-MNIST, CIFAR-10, CelebA, any ImageFolder tree and scikit-learn's digits.

Every image leaves its loader as float32 ``[C, H, W]`` in ``value_range`` (``(-1, 1)`` by default,
``(0, 1)`` on request); :class:`ToValueRange` is the one place that scaling happens. Validation sets are
carved deterministically from the training split with ``seed`` (``val_size``: a count, or a fraction in
(0, 1)), except for CelebA, which ships an official validation split. Every one takes ``train_subset``
(:class:`~datamodules.base.ZooDataModule`): train on a fixed seeded subset of the training split.

Downloads go through torchvision (``download=True``); files already in ``data_dir`` are used without touching
the network (the MNIST-family ``.gz`` originals are read in place, so a read-only folder works). When files are
missing and cannot be fetched a :class:`~datamodules.base.DataNotFoundError` says which files belong where and
where to get them.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.error import URLError

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import check_integrity
from torchvision.transforms import v2

from .base import DataNotFoundError, DictDataset, TensorDictDataset, UnreadableImageError, ZooDataModule

DOWNLOAD_SOCKET_TIMEOUT_S = 60.0
CELEBA_CROPS = ("2stage", "center140", "none")
# 2-Stage VAE (Dai & Wipf 2019) face box of the 218x178 aligned CelebA image: rows 45..172, cols 25..152
CELEBA_2STAGE_BOX = (45, 25, 128, 128)  # top, left, height, width


# ----------------------------------------------------------------------------------------------------
# shared helpers


def scale_unit_to_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Affinely maps values in [0, 1] onto ``value_range``."""
    low, high = value_range
    return x * (high - low) + low


class ToValueRange:
    """Transform: float image in [0, 1] -> ``value_range``.

    A class rather than a lambda so that dataloader worker processes can pickle it."""

    def __init__(self, value_range: tuple[float, float]) -> None:
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        # as_subclass: drop torchvision's Image wrapper so batches are plain tensors
        return scale_unit_to_range(image.as_subclass(torch.Tensor), self.value_range)


class CropBox:
    """Transform: keep the pixel box ``[top:top+height, left:left+width]`` of a PIL image or tensor."""

    def __init__(self, top: int, left: int, height: int, width: int) -> None:
        self.box = (top, left, height, width)

    def __call__(self, image):
        return v2.functional.crop(image, *self.box)


def image_transform(value_range: tuple[float, float], pil_steps: Sequence[Callable] = ()) -> v2.Compose:
    """PIL steps (crop/resize/grayscale), then to a float tensor in [0, 1], then onto ``value_range``."""
    to_unit_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose([*pil_steps, *to_unit_float, ToValueRange(value_range)])


def resize_step(image_size: int | None) -> list[Callable]:
    return [] if image_size is None else [v2.Resize((image_size, image_size), antialias=True)]


def validate_image_size(image_size: int | None) -> None:
    if image_size is not None and image_size < 4:
        raise ValueError(f"image_size must be >= 4 (or None for the native size), got {image_size}")


def validate_split_size(size: int | float, name: str) -> None:
    """A split size is a count (int >= 0) or a fraction (float strictly inside (0, 1))."""
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise ValueError(f"{name} must be an int count or a float fraction, got {size!r}")
    if isinstance(size, float) and not 0.0 < size < 1.0:
        raise ValueError(f"{name} as a fraction must lie in (0, 1), got {size}")
    if isinstance(size, int) and size < 0:
        raise ValueError(f"{name} must be >= 0, got {size}")


def resolve_split_size(size: int | float, total: int, name: str) -> int:
    count = round(size * total) if isinstance(size, float) else size
    if count >= total:
        raise ValueError(f"{name}={size} leaves no training samples out of {total}")
    return count


def split_off_holdouts(dataset: Dataset, holdout_sizes: Sequence[int],
                       generator: torch.Generator) -> list[Dataset | None]:
    """Deterministic split: ``[train, holdout_0, holdout_1, ...]``; a zero-sized holdout becomes ``None``."""
    order = torch.randperm(len(dataset), generator=generator).tolist()  # type: ignore[arg-type]
    num_train = len(order) - sum(holdout_sizes)
    parts: list[Dataset | None] = [Subset(dataset, order[:num_train])]
    start = num_train
    for size in holdout_sizes:
        parts.append(Subset(dataset, order[start:start + size]) if size > 0 else None)
        start += size
    return parts


def split_train_val_test(full: Dataset, val_size: int | float, test_size: int | float,
                         generator: torch.Generator) -> list[Dataset | None]:
    total = len(full)  # type: ignore[arg-type]
    holdout = [resolve_split_size(val_size, total, "val_size"),
               resolve_split_size(test_size, total, "test_size")]
    if sum(holdout) >= total:
        raise ValueError(f"val_size + test_size = {sum(holdout)} leaves no training samples out of {total}")
    return split_off_holdouts(full, holdout, generator)


@contextlib.contextmanager
def network_timeout(seconds: float) -> Iterator[None]:
    """torchvision's downloads have no timeout: bound every socket operation so that machines without
    internet access fail instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# ----------------------------------------------------------------------------------------------------
# torchvision datasets


class ImageDataModule(ZooDataModule):
    """Base of the image datamodules: the ``download`` flag and the tensor/value-range transform."""

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), download: bool = True,
                 train_subset: int | None = None) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         value_range=value_range, train_subset=train_subset)
        self.download = download

    def transform(self, pil_steps: Sequence[Callable] = ()) -> v2.Compose:
        return image_transform(self.value_range, pil_steps)


class TrainTestImageDataModule(ImageDataModule):
    """A torchvision dataset with ``train=True/False`` splits; the validation set is carved out of train."""

    torchvision_class: type
    native_shape: tuple[int, int, int]

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), download: bool = True,
                 val_size: int | float = 5000, image_size: int | None = None,
                 train_subset: int | None = None) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         value_range=value_range, download=download, train_subset=train_subset)
        validate_split_size(val_size, "val_size")
        validate_image_size(image_size)
        self.val_size = val_size
        self.image_size = image_size

    @property
    def data_shape(self) -> tuple[int, ...]:
        channels, height, width = self.native_shape
        if self.image_size is None:
            return (channels, height, width)
        return (channels, self.image_size, self.image_size)

    def missing_data_message(self) -> str:
        raise NotImplementedError

    def load_split(self, train: bool) -> Dataset:
        try:
            with network_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                return self.torchvision_class(self.data_dir, train=train, download=self.download,
                                              transform=self.transform(resize_step(self.image_size)))
        except (RuntimeError, URLError, OSError) as err:
            raise DataNotFoundError(f"{self.missing_data_message()} (torchvision: {err})") from err

    def prepare_data(self) -> None:
        # Lightning runs this on one process per node, so DDP ranks never download into the same files
        self.load_split(train=True)
        self.load_split(train=False)

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        train_full = self.load_split(train=True)
        num_val = resolve_split_size(self.val_size, len(train_full), "val_size")
        train, val = split_off_holdouts(train_full, [num_val], self.split_generator())
        test = self.load_split(train=False)
        return DictDataset(train), (DictDataset(val) if val is not None else None), DictDataset(test)


def read_gzipped_idx(path: str) -> torch.Tensor:
    """A gzipped uint8 IDX file (MNIST format: magic ``00 00 08 <ndim>``, then big-endian uint32 sizes)."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    if data[:3] != b"\x00\x00\x08":
        raise RuntimeError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 + 4 * ndim).view(*shape)


class ReadsGzipInPlace:
    """Mixin for torchvision's MNIST family. torchvision only reads extracted files and, with download=True,
    extracts the ``.gz`` originals next to themselves; this also reads the originals directly, so a data folder
    holding just them works offline and is never written to."""

    folder_name: str  # torchvision derives it from the class name, which this subclass would change

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, self.folder_name, "raw")

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, self.folder_name, "processed")

    def has_gzipped_originals(self) -> bool:
        return all(check_integrity(os.path.join(self.raw_folder, name), md5) for name, md5 in self.resources)

    def _check_exists(self) -> bool:
        return super()._check_exists() or self.has_gzipped_originals()

    def _load_data(self):
        if super()._check_exists():  # extracted files
            return super()._load_data()
        prefix = os.path.join(self.raw_folder, "train" if self.train else "t10k")
        images = read_gzipped_idx(f"{prefix}-images-idx3-ubyte.gz")
        return images, read_gzipped_idx(f"{prefix}-labels-idx1-ubyte.gz").long()


class TorchvisionMNIST(ReadsGzipInPlace, tv_datasets.MNIST):
    folder_name = "MNIST"


class TorchvisionFashionMNIST(ReadsGzipInPlace, tv_datasets.FashionMNIST):
    folder_name = "FashionMNIST"


class MNIST(TrainTestImageDataModule):
    """MNIST, 60,000 train (minus ``val_size``) / 10,000 test, 1x28x28 (or ``image_size`` square).

    Files: ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (the originals, read in
    place) or the same files extracted."""

    torchvision_class: type = TorchvisionMNIST
    native_shape = (1, 28, 28)

    def raw_folder(self) -> Path:
        return Path(self.data_dir) / self.torchvision_class.folder_name / "raw"

    def missing_data_message(self) -> str:
        files = ", ".join(name for name, _ in self.torchvision_class.resources)
        mirror = self.torchvision_class.mirrors[0]
        return (f"{type(self).__name__} data not found: expected {files} (gzipped or extracted) in "
                f"{self.raw_folder().resolve()}/ . Download them from {mirror} (e.g. {mirror}"
                f"{self.torchvision_class.resources[0][0]}) into that folder, or run once with "
                f"`--data.download true` on a machine with internet access.")


class FashionMNIST(MNIST):
    """Fashion-MNIST, same layout as MNIST under ``<data_dir>/FashionMNIST/raw/``."""

    torchvision_class = TorchvisionFashionMNIST


class CIFAR10(TrainTestImageDataModule):
    """CIFAR-10, 50,000 train (minus ``val_size``) / 10,000 test, 3x32x32 (or ``image_size`` square).

    Files: ``<data_dir>/cifar-10-batches-py/`` (the python version); with ``download=True`` torchvision also
    extracts a local ``<data_dir>/cifar-10-python.tar.gz`` without network access."""

    torchvision_class = tv_datasets.CIFAR10
    native_shape = (3, 32, 32)

    def missing_data_message(self) -> str:
        cls = self.torchvision_class
        batches = ", ".join(name for name, _ in cls.train_list + cls.test_list)
        root = Path(self.data_dir).resolve()
        return (f"CIFAR10 data not found: expected {root / cls.base_folder}/ holding {batches} and "
                f"batches.meta (the python version). Download and extract {cls.url} into {root}/, or run "
                f"with `--data.download true` (on a machine with internet access unless {root / cls.filename} "
                f"is already there).")


def celeba_pil_steps(crop: str, image_size: int) -> list[Callable]:
    """The crop + resize of the aligned 218x178 CelebA faces.

    - ``"2stage"``: the 2-Stage VAE box ``img[45:173, 25:153]`` (128x128), resized to ``image_size``
      (no resampling at 128).
    - ``"center140"``: WAE's 140x140 centre crop, resized to ``image_size``.
    - ``"none"``: the whole image squashed to ``image_size x image_size`` (aspect ratio not kept).
    """
    if crop == "2stage":
        steps: list[Callable] = [CropBox(*CELEBA_2STAGE_BOX)]
    elif crop == "center140":
        steps = [v2.CenterCrop(140)]
    elif crop == "none":
        steps = []
    else:
        raise ValueError(f"crop must be one of {CELEBA_CROPS}, got {crop!r}")
    return steps + resize_step(image_size)


CELEBA_SPLITS = ("official", "all")


class CelebA(ImageDataModule):
    """CelebA aligned faces with the official train (162,770) / valid (19,867) / test (19,962) partition,
    3 x image_size x image_size, no labels.

    ``split="all"`` trains on all 202,599 images (OC-GAN's authors do); validation and test stay the official
    partitions, so they then overlap the training set: scores on them measure fit, not generalisation.

    Files (torchvision layout): ``<data_dir>/celeba/img_align_celeba/*.jpg`` plus ``list_eval_partition.txt``,
    ``list_attr_celeba.txt``, ``identity_CelebA.txt``, ``list_bbox_celeba.txt`` and
    ``list_landmarks_align_celeba.txt`` in ``<data_dir>/celeba/``. Google Drive quotas make ``download``
    unreliable, so expect to place them by hand."""

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), download: bool = True, image_size: int = 64,
                 crop: str = "2stage", split: str = "official", train_subset: int | None = None) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         value_range=value_range, download=download, train_subset=train_subset)
        validate_image_size(image_size)
        celeba_pil_steps(crop, image_size)  # validates crop now rather than at setup
        if split not in CELEBA_SPLITS:
            raise ValueError(f"CelebA: split must be one of {CELEBA_SPLITS} ('official': train on the 162,770 "
                             f"training images; 'all': on all 202,599), got {split!r}")
        self.image_size = image_size
        self.crop = crop
        self.split = split

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def missing_data_message(self) -> str:
        folder = (Path(self.data_dir) / tv_datasets.CelebA.base_folder).resolve()
        text_files = ", ".join(name for _, _, name in tv_datasets.CelebA.file_list if name.endswith(".txt"))
        return (f"CelebA data not found: put the aligned JPEGs in {folder}/img_align_celeba/ and "
                f"{text_files} in {folder}/ (from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html: "
                f"'Align&Cropped Images', 'Anno' and 'Eval'). The automatic Google Drive download (needs gdown) "
                f"is often over quota.")

    def load_split(self, split: str) -> Dataset:
        transform = self.transform(celeba_pil_steps(self.crop, self.image_size))
        try:
            with network_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                dataset = tv_datasets.CelebA(self.data_dir, split=split, target_type=[], transform=transform,
                                             download=self.download)
        except (RuntimeError, URLError, OSError) as err:
            raise DataNotFoundError(f"{self.missing_data_message()} (torchvision: {err})") from err
        return DictDataset(dataset, keys=("x",))  # target_type=[] gives a None target: keep only the image

    def prepare_data(self) -> None:
        self.load_split("train")

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        train = self.load_split("train" if self.split == "official" else "all")
        return train, self.load_split("valid"), self.load_split("test")


# ----------------------------------------------------------------------------------------------------
# local images


def load_rgb(path: str) -> Image.Image:
    """The ImageFolder loader, with an error that names the file when it cannot be decoded."""
    try:
        with open(path, "rb") as file:
            return Image.open(file).convert("RGB")
    except (OSError, SyntaxError) as error:  # PIL's errors for truncated, corrupt and non-image files
        raise UnreadableImageError(f"image {path} cannot be read: {error} (fix or remove the file, or set the "
                                   "datamodule's skip_unreadable: true to skip such files with a warning)",
                                   path, str(error)) from error


class SkipUnreadable(Dataset):
    """A split of image samples where an unreadable file is replaced by the split's next readable sample, with a
    warning naming it (once per file and process; ``skipped`` holds the paths)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        for offset in range(len(self)):
            try:
                return self.dataset[(index + offset) % len(self)]
            except UnreadableImageError as error:
                if error.path not in self.skipped:
                    self.skipped.add(error.path)
                    warnings.warn(f"skipping unreadable image {error.path} ({error.reason}); {len(self.skipped)} "
                                  "skipped so far in this process", stacklevel=2)
        raise UnreadableImageError(f"no image of this split can be read ({len(self.skipped)} tried)")


class ImageFolderDataModule(ImageDataModule):
    """Any ``root/<class>/<image>`` tree (torchvision ImageFolder), resized to ``image_size`` square.

    ``crop="center"`` resizes the short side then centre-crops; ``"none"`` squashes the whole image.
    ``val_size``/``test_size`` (counts or fractions) are split off deterministically from ``seed``. Samples
    carry the class index as ``"label"``.

    An image that cannot be decoded (truncated download, corrupt file) stops the run with an
    :class:`UnreadableImageError` naming it; with ``skip_unreadable`` it is replaced by the next readable image of
    its split and a warning names it (large scraped folders often hold a few such files)."""

    def __init__(self, root: str, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), image_size: int = 64, crop: str = "center",
                 channels: int = 3, val_size: int | float = 0.05, test_size: int | float = 0.05,
                 train_subset: int | None = None, skip_unreadable: bool = False) -> None:
        super().__init__(data_dir=root, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         value_range=value_range, download=False, train_subset=train_subset)
        validate_image_size(image_size)
        if crop not in ("center", "none"):
            raise ValueError(f"crop must be 'center' or 'none', got {crop!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        validate_split_size(val_size, "val_size")
        validate_split_size(test_size, "test_size")
        self.root = root
        self.image_size = image_size
        self.crop = crop
        self.channels = channels
        self.val_size = val_size
        self.test_size = test_size
        self.skip_unreadable = bool(skip_unreadable)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    def pil_steps(self) -> list[Callable]:
        if self.crop == "center":
            steps: list[Callable] = [v2.Resize(self.image_size, antialias=True),
                                     v2.CenterCrop(self.image_size)]
        else:
            steps = resize_step(self.image_size)
        if self.channels == 1:
            steps.append(v2.Grayscale(num_output_channels=1))  # the ImageFolder loader always yields RGB
        return steps

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        layout = "root/<class_name>/<image>.{jpg,png,...}"
        if not os.path.isdir(self.root):
            raise DataNotFoundError(f"ImageFolderDataModule: root {Path(self.root).resolve()} is not a "
                                    f"directory (expected the layout {layout})")
        try:
            full = tv_datasets.ImageFolder(self.root, transform=self.transform(self.pil_steps()), loader=load_rgb)
        except FileNotFoundError as err:  # no class folders, or no image files in them
            raise DataNotFoundError(f"ImageFolderDataModule: no images found under "
                                    f"{Path(self.root).resolve()} (expected the layout {layout}): {err}") from err
        splits = split_train_val_test(full, self.val_size, self.test_size, self.split_generator())
        wrap = SkipUnreadable if self.skip_unreadable else (lambda split: split)
        train, val, test = (DictDataset(wrap(split)) if split is not None else None for split in splits)
        return train, val, test


class Digits(ImageDataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, works offline), 1 x size x size.

    Pixel values 0..16 are scaled to ``value_range``; an ``image_size`` other than 8 resizes bilinearly.
    Default split 1497 train / 150 val / 150 test, chosen by ``seed``. Samples carry the digit as ``"label"``."""

    MAX_PIXEL = 16.0

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), image_size: int = 8,
                 val_size: int | float = 150, test_size: int | float = 150,
                 train_subset: int | None = None) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, value_range=value_range,
                         download=False, train_subset=train_subset)
        validate_image_size(image_size)
        validate_split_size(val_size, "val_size")
        validate_split_size(test_size, "test_size")
        self.image_size = image_size
        self.val_size = val_size
        self.test_size = test_size

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / self.MAX_PIXEL
        if self.image_size != images.shape[-1]:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True).clamp(0.0, 1.0)
        full = TensorDictDataset(x=scale_unit_to_range(images, self.value_range),
                                 label=torch.as_tensor(digits.target, dtype=torch.long))
        train, val, test = split_train_val_test(full, self.val_size, self.test_size, self.split_generator())
        return train, val, test  # type: ignore[return-value]
