"""The datamodule base every zoo dataset shares.

Batches are dicts: ``{"x": Tensor[B, *data_shape]}`` plus optional keys (``"label"``, ``"tangents"`` of
shape ``[B, *data_shape, k]``). Models read only the keys they need, so a tangent-carrying batch (FlatGAN)
flows through the same loaders as a plain one.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from genzoo.compat import batches_done_in_resumed_epoch
from genzoo.ops.utils import seeded


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing and cannot be downloaded; the message names them."""


class CorruptDataError(DataNotFoundError):
    """A dataset file that is there but damaged (checksum mismatch, truncated, not the expected content); the
    message names it. A :class:`DataNotFoundError`: the usable data is not there either."""


class UnreadableImageError(OSError):
    """An image file that cannot be decoded (truncated, corrupt, not an image); the message names it."""

    def __init__(self, message: str, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)  # one positional argument: DataLoader workers re-raise it from the message
        self.path, self.reason = path, reason


class DictDataset(Dataset):
    """Wraps a dataset of ``(x, label)`` pairs (torchvision style) into dict samples."""

    def __init__(self, dataset: Dataset, keys: Sequence[str] = ("x", "label")) -> None:
        self.dataset = dataset
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if not isinstance(item, tuple | list):
            item = (item,)
        return dict(zip(self.keys, item, strict=False))


class TensorDictDataset(Dataset):
    """Dict samples from tensors of equal length, e.g. ``TensorDictDataset(x=points, tangents=t)``."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            lengths_by_name = {name: len(t) for name, t in tensors.items()}
            raise ValueError(f"all tensors must have the same length, got {lengths_by_name}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


class ResumableSampler(DistributedSampler):
    """Seeded shuffling whose order is a function of (seed, epoch) only, sharded over ranks, that can skip
    the samples an interrupted epoch already consumed. This is what makes ``--ckpt_path`` resume exact:
    Lightning restarts a dataloader from its first batch, which would replay (and reorder) data."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 batch_size: int = 1) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self._skip_epoch = -1
        self._skip_batches = 0

    def skip_batches(self, epoch: int, num_batches: int) -> None:
        """Drop the first ``num_batches`` batches of ``epoch`` (once), because they were trained on already."""
        self._skip_epoch, self._skip_batches = epoch, num_batches

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.epoch == self._skip_epoch:
            indices = indices[self._skip_batches * self.batch_size:]
            self._skip_epoch = -1
        return iter(indices)


class ZooDataModule(L.LightningDataModule):
    """The data, any genzoo datamodule (``--data.help genzoo.datamodules.Digits`` lists one datamodule's options).

    The shared base: splits, loaders, seeding and the value-range contract.

    Subclasses implement :meth:`build_datasets` (returning dict-sample datasets for train/val/test) and
    :attr:`data_shape`. ``value_range`` is the range models must generate in (images: ``(-1, 1)`` by default).

    ``train_subset``: train on a fixed random subset of that many training samples (None: all), e.g. AE-OT's
    25,000 CIFAR-10 / 10,000 CelebA images. The subset is a function of ``seed`` and the split alone, so every
    rank and every resumed run sees the same images; validation and test splits are not touched.

    :meth:`identity` names the samples (it keys the evaluation's reference cache), from the arguments the
    datamodule was built with; :meth:`train_dataset` is the training split the model trains on.
    """

    #: init arguments that cannot change the samples, left out of :meth:`identity`
    SAMPLE_NEUTRAL_ARGUMENTS = frozenset({"data_dir", "batch_size", "num_workers", "download"})

    def __init__(self, data_dir: str = "data", batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0), train_subset: int | None = None) -> None:
        super().__init__()
        # not save_hyperparameters(): Lightning would merge these with the model's hyper-parameters (and fail
        # on a shared name with another value) and pickle a wrapper's base datamodule into checkpoints
        self._init_arguments = outermost_init_arguments(self)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if train_subset is not None and (isinstance(train_subset, bool) or not isinstance(train_subset, int)
                                         or train_subset < 1):
            raise ValueError(f"{type(self).__name__}: train_subset must be a count >= 1 or None (the whole "
                             f"training split), got {train_subset!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if tuple(value_range) not in {(-1.0, 1.0), (0.0, 1.0)} and not self.arbitrary_value_range:
            raise ValueError(f"value_range must be (-1, 1) or (0, 1), got {tuple(value_range)}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.train_subset = train_subset
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    arbitrary_value_range = False  # toys live in their own coordinates

    def identity(self) -> dict[str, Any]:
        """What the samples depend on: the class and the arguments it was built with (those of the class that
        was instantiated, defaults included, even ones a subclass keeps privately), less
        :attr:`SAMPLE_NEUTRAL_ARGUMENTS` and arguments left at a default of None (such an argument is always
        there, so leaving it out loses nothing). A datamodule argument (a wrapper's ``base``) contributes its
        own identity. Equal identities must mean equal samples: a subclass whose samples depend on anything
        else (a global, an environment variable) adds it by overriding this."""
        parameters = inspect.signature(type(self).__init__).parameters
        settings = {name: identity_value(value) for name, value in self._init_arguments.items()
                    if name not in self.SAMPLE_NEUTRAL_ARGUMENTS
                    and not (value is None and name in parameters and parameters[name].default is None)}
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", **settings}

    @property
    def data_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            train_set, self.val_set, self.test_set = self.build_datasets()
            self.train_set = self.checked_training_split(train_set)

    def checked_training_split(self, train_set: Dataset) -> Dataset:
        """The training split after ``train_subset``; an error when it holds fewer samples than a batch."""
        train_set = self.training_subset(train_set)
        if len(train_set) < self.batch_size:  # type: ignore[arg-type]
            raise ValueError(f"{type(self).__name__}: the training split has {len(train_set)} samples, fewer than "
                             f"batch_size={self.batch_size}")
        return train_set

    def train_dataset(self) -> Dataset:
        """The training split as the model trains on it (after ``train_subset``), set up first if needed: for
        models that need the whole training set at once (AE-OT encodes it for its OT solve)."""
        if self.train_set is None:
            self.setup("fit")
        return self.train_set

    def training_subset(self, train_set: Dataset) -> Dataset:
        """``train_set`` itself, or its ``train_subset`` samples chosen by ``seed`` (kept in split order)."""
        if self.train_subset is None:
            return train_set
        size = len(train_set)  # type: ignore[arg-type]
        if self.train_subset > size:
            raise ValueError(f"{type(self).__name__}: train_subset={self.train_subset} is larger than the training "
                             f"split ({size} samples)")
        # a generator of its own: the subset must not depend on (or move) the global RNG
        order = torch.randperm(size, generator=seeded(self.seed))
        return Subset(train_set, order[: self.train_subset].sort().values.tolist())

    def _loader(self, dataset: Dataset, sampler=None, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        world, rank, skip_epoch, skip = 1, 0, -1, 0
        trainer = self.trainer
        if trainer is not None:
            world, rank = trainer.world_size, trainer.global_rank
            skip_epoch, skip = trainer.current_epoch, batches_done_in_resumed_epoch(trainer)
        sampler = ResumableSampler(self.train_set, num_replicas=world, rank=rank, seed=self.seed,
                                   batch_size=self.batch_size)
        if len(sampler) < self.batch_size:
            raise ValueError(f"{type(self).__name__}: each of {world} ranks gets {len(sampler)} training samples, "
                             f"fewer than batch_size={self.batch_size}")
        if skip:
            sampler.skip_batches(skip_epoch, skip)
        return self._loader(self.train_set, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader | list:
        return self._loader(self.test_set) if self.test_set is not None else []

    #: how many samples ``zoo predict`` generates (``--num_samples``)
    predict_samples = 64

    def predict_dataloader(self) -> DataLoader:
        """Sample indices for ``predict``: the model generates one sample per index (seeded by the batch)."""
        return DataLoader(torch.arange(self.predict_samples), batch_size=self.batch_size)

    def split_generator(self) -> torch.Generator:
        """A generator for deterministic splits that does not touch the global RNG."""
        return seeded(self.seed)


def outermost_init_arguments(obj: object) -> dict[str, Any]:
    """The arguments of the outermost ``__init__`` running on ``obj`` (the class that was instantiated, with its
    defaults), found by walking up the calling frames as Lightning's ``save_hyperparameters`` does. Call it
    from an ``__init__`` before the arguments are reassigned."""
    frame, outermost = inspect.currentframe().f_back, None
    while frame is not None and frame.f_code.co_name == "__init__" and frame.f_code.co_argcount > 0 \
            and frame.f_locals.get(frame.f_code.co_varnames[0]) is obj:
        outermost, frame = frame, frame.f_back
    if outermost is None:
        raise RuntimeError("outermost_init_arguments must be called from an __init__ of the object")
    names, varargs, varkw, values = inspect.getargvalues(outermost)
    arguments = {name: values[name] for name in names[1:]}
    if varargs:
        arguments[varargs] = list(values[varargs])
    if varkw:
        arguments.update(values[varkw])  # keyword arguments passed on to a parent are arguments all the same
    return arguments


def identity_value(value: Any) -> Any:
    """A setting as plain JSON-like data; an object it cannot describe keys by its ``repr`` (one with a memory
    address never matches again: a recomputation, never a wrong hit)."""
    if isinstance(value, ZooDataModule):
        return value.identity()
    if isinstance(value, list | tuple):
        return [identity_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): identity_value(item) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
