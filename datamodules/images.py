"""Image datamodules: MNIST, Fashion-MNIST, CIFAR-10, CelebA, any ImageFolder tree and scikit-learn's digits.

Every image leaves its loader as float32 ``[C, H, W]`` in ``value_range`` (``(-1, 1)`` by default,
``(0, 1)`` on request); :class:`ToValueRange` is the one place that scaling happens. Validation sets are
carved deterministically from the training split with ``seed`` (``val_size``: a count, or a fraction in
(0, 1)), except for CelebA, which ships an official validation split. Every one takes ``train_subset``
(:class:`~genzoo.datamodules.base.ZooDataModule`): train on a fixed seeded subset of the training split.

Downloads use torchvision's URLs and checksums (``download=True``); files already in ``data_dir`` are used
without touching the network (the MNIST-family ``.gz`` originals are read in place, so a read-only folder works).
MNIST, Fashion-MNIST and CIFAR-10 read each split from its own files (the test split needs only the test files)
and check every file they read; a :class:`~genzoo.datamodules.base.DataNotFoundError` names each missing file and says
where to get it, a :class:`~genzoo.datamodules.base.CorruptDataError` each damaged one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import pickle
import socket
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import download_and_extract_archive, download_url
from torchvision.transforms import v2

from .base import (
    CorruptDataError,
    DataNotFoundError,
    DictDataset,
    TensorDictDataset,
    UnreadableImageError,
    ZooDataModule,
)

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


class FileProblem(Exception):
    """Why one file of a split cannot be used; ``str()`` names the file. ``missing``: not there at all (rather than
    damaged); ``name``: the file's name in its dataset's listing (what a download would fetch)."""

    def __init__(self, text: str, name: str, missing: bool = False) -> None:
        super().__init__(text)
        self.name, self.missing = name, missing


class LazySplit:
    """A ``train_set``/``val_set``/``test_set`` attribute of :class:`TrainTestImageDataModule`: None before
    ``setup``, after it the split, read from its own files on first use."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.part = name, "test" if name == "test_set" else "train"

    def __get__(self, datamodule, owner=None):
        if datamodule is None:
            return self
        datamodule.load_files(self.part)
        return datamodule.__dict__.get(self.name)

    def __set__(self, datamodule, value) -> None:
        datamodule.__dict__[self.name] = value


class ImageArrayDataset(Dataset):
    """``(image, label)`` samples of a uint8 array ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB), each image
    through PIL and ``transform``, as torchvision's MNIST and CIFAR10 give them."""

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, transform: Callable) -> None:
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.data[index].numpy())), int(self.targets[index])


class TrainTestImageDataModule(ImageDataModule):
    """A dataset whose training and test splits are in files of their own; the validation set is carved out of
    the training split.

    The splits load on first use after :meth:`setup` (``train_set`` and ``val_set`` from the training files,
    ``test_set`` from the test files; before ``setup`` they are None), so the test split alone (an evaluation
    reference, ``setup("test")``) needs only the test files, and training only the training files. Every file is
    checked as it is read: :class:`DataNotFoundError` names each missing file of the split, :class:`CorruptDataError`
    each damaged one (checksum mismatch, truncated, not the expected content). With ``download`` the split's
    missing or damaged files are downloaded first (one try per split).

    Subclasses read a split (:meth:`read_split`), download files (:meth:`fetch`) and say where the files come
    from (:meth:`where_to_get`)."""

    torchvision_class: type  # whose file names, checksums and URLs these are
    native_shape: tuple[int, int, int]
    train_set = LazySplit()
    val_set = LazySplit()
    test_set = LazySplit()
    _set_up = False

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
        self._loaded: set[str] = set()  # "train" (training and validation splits), "test"
        self._datasets: dict[bool, ImageArrayDataset] = {}  # by train
        self._download_errors: dict[bool, str | None] = {}  # by train: the outcome of its one download try

    @property
    def data_shape(self) -> tuple[int, ...]:
        channels, height, width = self.native_shape
        if self.image_size is None:
            return (channels, height, width)
        return (channels, self.image_size, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        self._set_up = True  # each split is read from its own files when first used

    def load_files(self, part: str) -> None:
        """Load ``part`` ("train": the training and validation splits; "test") once, if set up."""
        if not self._set_up or part in self._loaded:
            return
        if part == "train":
            full = self.load_split(train=True)
            num_val = resolve_split_size(self.val_size, len(full), "val_size")
            train, val = split_off_holdouts(full, [num_val], self.split_generator())
            self.train_set = self.checked_training_split(DictDataset(train))
            self.val_set = DictDataset(val) if val is not None else None
        else:
            self.test_set = DictDataset(self.load_split(train=False))
        self._loaded.add(part)

    def prepare_data(self) -> None:
        # Lightning runs this on one process per node, so DDP ranks never download into the same files; a split
        # that still cannot be read stops the run when it is first used (training may not need the test files)
        if self.download:
            for train in (True, False):
                with contextlib.suppress(DataNotFoundError):
                    self.load_split(train)

    def load_split(self, train: bool) -> ImageArrayDataset:
        """The training (``train=True``) or test split, read from its own files and checked."""
        if train not in self._datasets:
            problems, arrays = self.read_split(train)
            if problems and self.download and train not in self._download_errors:
                self._download_errors[train] = self.try_to_fetch(problems)
                problems, arrays = self.read_split(train)
            if problems:
                raise self.split_error(train, problems)
            self._datasets[train] = ImageArrayDataset(*arrays, self.transform(resize_step(self.image_size)))
        return self._datasets[train]

    def read_split(self, train: bool) -> tuple[list[FileProblem], tuple[torch.Tensor, torch.Tensor] | None]:
        """The split's problems (one per unusable file), or none and its ``(images, labels)``."""
        raise NotImplementedError

    def fetch(self, names: list[str]) -> None:
        """Download the files named (their names in :attr:`torchvision_class`'s listing)."""
        raise NotImplementedError

    def where_to_get(self, names: list[str]) -> str:
        """Where to get the files named, as the end of a sentence ("download X into Y")."""
        raise NotImplementedError

    def try_to_fetch(self, problems: list[FileProblem]) -> str | None:
        """Downloads what the problems need; the error, if that fails."""
        try:
            with network_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                self.fetch(list(dict.fromkeys(problem.name for problem in problems)))
        except (RuntimeError, URLError, OSError) as error:
            return f"{type(error).__name__}: {error}"
        return None

    def split_error(self, train: bool, problems: list[FileProblem]) -> DataNotFoundError:
        missing = all(problem.missing for problem in problems)
        names = list(dict.fromkeys(problem.name for problem in problems))
        split = "training" if train else "test"
        remedy = "download" if missing else "delete the damaged files, then download"
        message = (f"{type(self).__name__} {split} data {'not found' if missing else 'damaged'}: "
                   f"{'; '.join(str(problem) for problem in problems)}. To fix: {remedy} "
                   f"{self.where_to_get(names)}")
        download_error = self._download_errors.get(train)
        if not self.download:
            message += (", or let the datamodule download them: download: true (with `zoo fit`: "
                        "--data.init_args.download true).")
        elif download_error is not None:
            message += (f". Downloading them failed ({download_error}): without internet access, copy them there "
                        "by hand.")
        else:
            message += "."
        return (DataNotFoundError if missing else CorruptDataError)(message)


def check_gzip(data: bytes, path: Path, md5: str) -> bytes:
    """The decompressed content of a ``.gz`` file whose bytes are ``data``, checked against its known MD5."""
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if actual != md5:
        if not data:
            raise ValueError(f"empty: {path} (0 bytes)")
        try:
            gzip.decompress(data)
        except EOFError:
            raise ValueError(f"truncated: {path} ({len(data)} bytes; its gzip stream ends early: an "
                             "interrupted download?)") from None
        except (OSError, zlib.error):  # gzip.BadGzipFile is an OSError
            pass  # damaged: the checksum says so
        raise ValueError(f"checksum mismatch: {path} (expected MD5 {md5}, got {actual})")
    return gzip.decompress(data)


def parse_idx(data: bytes, path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """The uint8 array of an IDX file (magic ``00 00 08 <ndim>``, big-endian uint32 sizes, then the values)
    whose bytes are ``data``, checked to hold exactly ``shape``; errors name ``path``."""
    ndim = len(shape)
    header = 4 + 4 * ndim
    expected = tuple(shape)
    if len(data) < header or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        if data and not np.frombuffer(data, dtype=np.uint8).any():
            raise ValueError(f"all zero: {path} ({len(data)} zero bytes: a zero-filled or unfinished copy?)")
        raise ValueError(f"not a uint8 IDX file of {ndim} dimensions: {path} (it starts with "
                         f"{data[:4].hex(' ') or 'nothing'}, expected 00 00 08 {ndim:02x})")
    declared = struct.unpack(f">{ndim}I", data[4:header])
    if declared != expected:
        raise ValueError(f"wrong dimensions: {path} declares {'x'.join(map(str, declared))}, expected "
                         f"{'x'.join(map(str, expected))}")
    size = header + math.prod(expected)
    if len(data) != size:
        state = "truncated" if len(data) < size else "too long"
        raise ValueError(f"{state}: {path} has {len(data)} bytes, its header declares {size}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(*expected)


class MNIST(TrainTestImageDataModule):
    """MNIST, 60,000 train (minus ``val_size``) / 10,000 test, 1x28x28 (or ``image_size`` square).

    Files: ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (the originals, read in
    place and checked against torchvision's MD5s) or the same files extracted (their header, size and content
    checked). The training split needs only the two ``train-*`` files, the test split only the two ``t10k-*``."""

    torchvision_class: type = tv_datasets.MNIST
    native_shape = (1, 28, 28)
    split_sizes = {True: 60_000, False: 10_000}
    num_classes = 10

    def raw_folder(self) -> Path:
        return (Path(self.data_dir) / self.torchvision_class.__name__ / "raw").resolve()

    def read_split(self, train: bool) -> tuple[list[FileProblem], tuple[torch.Tensor, torch.Tensor] | None]:
        prefix, count = ("train" if train else "t10k"), self.split_sizes[train]
        problems = []
        arrays = []
        for kind, shape in (("images-idx3", (count, *self.native_shape[1:])), ("labels-idx1", (count,))):
            try:
                arrays.append(self.read_idx(f"{prefix}-{kind}-ubyte", shape))
            except FileProblem as problem:
                problems.append(problem)
        return problems, (None if problems else (arrays[0], arrays[1].long()))

    def read_idx(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The checked array of the IDX file ``name``: its ``.gz`` original if there, else the extracted file."""
        gzipped, extracted = self.raw_folder() / f"{name}.gz", self.raw_folder() / name
        if not gzipped.is_file() and not extracted.is_file():
            raise FileProblem(f"missing {gzipped}", f"{name}.gz", missing=True)
        path = gzipped if gzipped.is_file() else extracted
        try:
            data = path.read_bytes()
            if path == gzipped:
                data = check_gzip(data, path, dict(self.torchvision_class.resources)[gzipped.name])
            array = parse_idx(data, path, shape)
            if len(shape) > 1 and not array.any():
                raise ValueError(f"blank: every image in {path} is all zero")
            if len(shape) == 1:
                if array.max() >= self.num_classes:
                    index = int((array >= self.num_classes).nonzero()[0])
                    raise ValueError(f"bad labels: {path} holds label {int(array[index])} at index {index} (labels "
                                     f"are 0 to {self.num_classes - 1})")
                if (array == array[0]).all():
                    raise ValueError(f"bad labels: every label in {path} is {int(array[0])}")
        except (OSError, ValueError) as error:
            raise FileProblem(str(error) if isinstance(error, ValueError) else f"unreadable: {path} ({error})",
                              f"{name}.gz") from None
        return array

    def fetch(self, names: list[str]) -> None:
        md5s = dict(self.torchvision_class.resources)
        for name in names:
            errors = []
            for mirror in self.torchvision_class.mirrors:
                try:
                    download_url(f"{mirror}{name}", str(self.raw_folder()), filename=name, md5=md5s[name])
                    break
                except (RuntimeError, URLError, OSError) as error:
                    errors.append(error)
            else:
                raise errors[-1]

    def where_to_get(self, names: list[str]) -> str:
        mirror = self.torchvision_class.mirrors[0]
        return f"{', '.join(mirror + name for name in names)} into {self.raw_folder()}/ (gzipped or extracted)"


class FashionMNIST(MNIST):
    """Fashion-MNIST, same layout as MNIST under ``<data_dir>/FashionMNIST/raw/``."""

    torchvision_class = tv_datasets.FashionMNIST


class CIFAR10(TrainTestImageDataModule):
    """CIFAR-10, 50,000 train (minus ``val_size``) / 10,000 test, 3x32x32 (or ``image_size`` square).

    Files: ``<data_dir>/cifar-10-batches-py/`` (the python version): ``data_batch_1`` .. ``data_batch_5`` for
    training, ``test_batch`` for the test split, each checked against torchvision's MD5s; with ``download``,
    missing ones come from a local ``<data_dir>/cifar-10-python.tar.gz`` if it is there, else from the web."""

    torchvision_class = tv_datasets.CIFAR10
    native_shape = (3, 32, 32)

    def read_split(self, train: bool) -> tuple[list[FileProblem], tuple[torch.Tensor, torch.Tensor] | None]:
        cls = self.torchvision_class
        folder = (Path(self.data_dir) / cls.base_folder).resolve()
        problems, images, labels = [], [], []
        for name, md5 in cls.train_list if train else cls.test_list:
            path = folder / name
            if not path.is_file():
                problems.append(FileProblem(f"missing {path}", name, missing=True))
                continue
            try:
                data = path.read_bytes()
            except OSError as error:
                problems.append(FileProblem(f"unreadable: {path} ({error})", name))
                continue
            actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if actual != md5:  # never unpickled: only the genuine files are
                problems.append(FileProblem(f"checksum mismatch: {path} (expected MD5 {md5}, got {actual}; "
                                            f"{len(data)} bytes)", name))
                continue
            entry = pickle.loads(data, encoding="latin1")
            images.append(torch.from_numpy(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)))
            labels.append(torch.as_tensor(entry["labels"], dtype=torch.long))
        if problems:
            return problems, None
        return [], (torch.cat(images).permute(0, 2, 3, 1).contiguous(), torch.cat(labels))

    def fetch(self, names: list[str]) -> None:
        cls = self.torchvision_class
        download_and_extract_archive(cls.url, self.data_dir, filename=cls.filename, md5=cls.tgz_md5)

    def where_to_get(self, names: list[str]) -> str:
        root = Path(self.data_dir).resolve()
        return f"and extract {self.torchvision_class.url} into {root}/ (it holds both splits)"


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
