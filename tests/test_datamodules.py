"""Datamodules: shapes, value ranges, splits, determinism, resumable/sharded sampling, toy statistics and the
errors for missing data and bad arguments. Runs offline on CPU."""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import make_swiss_roll
from torchvision.transforms import v2

from genzoo.datamodules import (
    CIFAR10,
    MNIST,
    CelebA,
    Circle5,
    CorruptDataError,
    DataNotFoundError,
    Digits,
    FashionMNIST,
    Gaussians8,
    Gaussians25WGANGP,
    Grid25,
    ImageFolderDataModule,
    ResumableSampler,
    SwissRoll,
)
from genzoo.datamodules.images import CELEBA_2STAGE_BOX, celeba_pil_steps, image_transform


@pytest.fixture(scope="module")
def fashion_mnist_root(tmp_path_factory, fashion_mnist_raw_dir) -> str:
    """A data_dir whose FashionMNIST/raw/ links to the shared (read-only) originals, so that a regression that
    writes next to them writes here, not into the shared folder."""
    root = tmp_path_factory.mktemp("fmnist")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in fashion_mnist_raw_dir.glob("*.gz"):
        (raw / archive.name).symlink_to(archive)
    return str(root)


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every torchvision download attempt fails at once (torchvision's urlopen has no timeout); returns the
    attempted URLs/ids so tests can check a download was really tried."""
    attempts: list[str] = []

    def refuse_url(request, *args, **kwargs):
        attempts.append(getattr(request, "full_url", str(request)))
        raise URLError("network disabled in tests")

    def refuse_google_drive(file_id, *args, **kwargs):
        attempts.append(file_id)
        raise RuntimeError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse_url)
    monkeypatch.setattr(torchvision.datasets.celeba, "download_file_from_google_drive", refuse_google_drive)
    return attempts


def first_batch(datamodule) -> dict[str, torch.Tensor]:
    return next(iter(datamodule.train_dataloader()))


def train_indices(datamodule) -> list[int]:
    return list(datamodule.train_set.dataset.indices)  # DictDataset(Subset(...))


def fake_trainer(world_size: int = 1, rank: int = 0, restarting: bool = False, epoch: int = 0,
                 completed_batches: int = 0) -> SimpleNamespace:
    """The trainer attributes ``ZooDataModule.train_dataloader`` reads."""
    progress = SimpleNamespace(current=SimpleNamespace(completed=completed_batches, processed=completed_batches))
    fit_loop = SimpleNamespace(restarting=restarting, epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(world_size=world_size, global_rank=rank, current_epoch=epoch, fit_loop=fit_loop)


def assert_batches_equal(batches_a, batches_b) -> None:
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# Fashion-MNIST (real files)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_fashion_mnist_shapes_splits_and_value_range(fashion_mnist_root, value_range):
    datamodule = FashionMNIST(data_dir=fashion_mnist_root, download=False, value_range=value_range)
    assert datamodule.data_shape == (1, 28, 28)  # known before any data is loaded
    datamodule.setup("fit")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (55000, 5000, 10000)

    batch = first_batch(datamodule)
    x = batch["x"]
    assert type(x) is torch.Tensor and x.dtype == torch.float32 and x.shape == (64, 1, 28, 28)
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (64,)
    low, high = value_range
    assert x.min() >= low and x.max() <= high
    assert x.min() == pytest.approx(low, abs=1e-6) and x.max() == pytest.approx(high, abs=1e-6)  # range used
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader()):
        assert next(iter(loader))["x"].shape == (64, 1, 28, 28)


def test_fashion_mnist_val_size_and_resize(fashion_mnist_root):
    datamodule = FashionMNIST(data_dir=fashion_mnist_root, download=False, val_size=0.1, image_size=32)
    assert datamodule.data_shape == (1, 32, 32)
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set)) == (54000, 6000)
    assert first_batch(datamodule)["x"].shape == (64, 1, 32, 32)

    no_val = FashionMNIST(data_dir=fashion_mnist_root, download=False, val_size=0)
    no_val.setup()
    assert len(no_val.train_set) == 60000 and no_val.val_set is None and no_val.val_dataloader() == []


def test_fashion_mnist_split_and_order_follow_the_seed(fashion_mnist_root):
    def build(seed):
        datamodule = FashionMNIST(data_dir=fashion_mnist_root, download=False, seed=seed)
        datamodule.setup()
        return datamodule

    first, same, other = build(0), build(0), build(1)
    assert train_indices(first) == train_indices(same)
    assert train_indices(first) != train_indices(other)
    assert_batches_equal([first_batch(first)], [first_batch(same)])
    assert not torch.equal(first_batch(first)["x"], first_batch(other)["x"])


def test_gzipped_originals_load_in_place_offline(fashion_mnist_root, no_network):
    datamodule = FashionMNIST(data_dir=fashion_mnist_root, download=True, val_size=0)
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.train_set) == 60000 and no_network == []
    raw = Path(fashion_mnist_root) / "FashionMNIST" / "raw"
    assert all(path.is_symlink() for path in raw.iterdir()), "nothing may be written next to the originals"
    assert not (raw.parent / "processed").exists()


def test_in_place_gzip_reading_matches_torchvision(fashion_mnist_raw_dir, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    datamodule = FashionMNIST(data_dir=str(fashion_mnist_raw_dir.parent.parent))
    for name, shape, read_extracted in (("t10k-images-idx3-ubyte", (10000, 28, 28), read_image_file),
                                        ("t10k-labels-idx1-ubyte", (10000,), read_label_file)):
        extracted = tmp_path / name
        extracted.write_bytes(gzip.decompress((fashion_mnist_raw_dir / f"{name}.gz").read_bytes()))
        assert torch.equal(datamodule.read_idx(name, shape).long(), read_extracted(str(extracted)).long())


def write_fake_cifar10(root: Path, images_per_batch: int, monkeypatch) -> np.ndarray:
    """torchvision's ``cifar-10-batches-py`` layout with random images, and torchvision's list of their MD5s
    patched to match (random batches cannot match the real ones; everything else is the real code path);
    returns all images, train then test."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    images = rng.integers(0, 256, size=(len(batches) * images_per_batch, 3 * 32 * 32), dtype=np.uint8)
    images[0, :2] = (0, 255)  # the extremes of the pixel range occur
    for i, name in enumerate(batches):
        rows = images[i * images_per_batch:(i + 1) * images_per_batch]
        labels = rng.integers(0, 10, size=images_per_batch).tolist()
        with open(folder / name, "wb") as file:
            pickle.dump({"data": rows, "labels": labels}, file)
    md5s = [[name, hashlib.md5((folder / name).read_bytes()).hexdigest()] for name in batches]
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list", md5s[:5])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", md5s[5:])
    return images


def test_cifar10_on_fake_batches(tmp_path, monkeypatch):
    images = write_fake_cifar10(tmp_path, images_per_batch=20, monkeypatch=monkeypatch)
    datamodule = CIFAR10(data_dir=str(tmp_path), download=False, val_size=10, batch_size=16)
    assert datamodule.data_shape == (3, 32, 32)
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (90, 10, 20)
    batch = first_batch(datamodule)
    assert batch["x"].shape == (16, 3, 32, 32) and batch["x"].dtype == torch.float32
    index = datamodule.train_set.dataset.indices[0]
    expected = torch.as_tensor(images[index].reshape(3, 32, 32), dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(datamodule.train_set[0]["x"], expected)
    all_train = torch.stack([datamodule.train_set[i]["x"] for i in range(90)] +
                            [datamodule.val_set[i]["x"] for i in range(10)])
    assert all_train.min() == -1.0 and all_train.max() == 1.0
    test_index = 7
    expected_test = torch.as_tensor(images[100 + test_index].reshape(3, 32, 32), dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(datamodule.test_set[test_index]["x"], expected_test)


def test_cifar10_splits_need_only_their_own_batches_and_name_the_damaged_one(tmp_path, monkeypatch, no_network):
    write_fake_cifar10(tmp_path, images_per_batch=20, monkeypatch=monkeypatch)
    folder = tmp_path / "cifar-10-batches-py"
    for number in range(1, 6):
        (folder / f"data_batch_{number}").unlink()
    datamodule = CIFAR10(data_dir=str(tmp_path), download=False, val_size=10, batch_size=16)
    datamodule.setup("test")
    assert len(datamodule.test_set) == 20
    with pytest.raises(DataNotFoundError) as error:
        datamodule.train_set  # noqa: B018
    message = str(error.value)
    assert message.startswith("CIFAR10 training data not found: missing ")
    assert all(f"{folder}/data_batch_{number}" in message for number in range(1, 6)) and "test_batch" not in message
    assert "cifar-10-python.tar.gz" in message and "--data.init_args.download true" in message

    test_batch = folder / "test_batch"
    expected_md5 = torchvision.datasets.CIFAR10.test_list[0][1]
    test_batch.write_bytes(test_batch.read_bytes()[:1000])  # truncated
    damaged = CIFAR10(data_dir=str(tmp_path), download=False)
    damaged.setup("test")
    with pytest.raises(CorruptDataError) as error:
        damaged.test_set  # noqa: B018
    got = hashlib.md5(test_batch.read_bytes()).hexdigest()
    assert f"checksum mismatch: {test_batch} (expected MD5 {expected_md5}, got {got}; 1000 bytes)" in str(error.value)
    assert no_network == []


# ---------------------------------------------------------------------------------------------------------
# missing data


@pytest.mark.parametrize("download", [True, False])
@pytest.mark.parametrize(("datamodule_class", "expected_parts"), [
    (MNIST, ["MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz", "ossci-datasets"]),
    (FashionMNIST, ["FashionMNIST/raw/train-images-idx3-ubyte.gz", "FashionMNIST/raw/train-labels-idx1-ubyte.gz",
                    "fashion-mnist"]),
    (CIFAR10, ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/data_batch_5", "cifar-10-python.tar.gz",
               "cs.toronto.edu"]),
    (CelebA, ["celeba/img_align_celeba/", "list_eval_partition.txt", "list_attr_celeba.txt"]),
])
def test_missing_data_names_the_expected_files(tmp_path, no_network, datamodule_class, expected_parts, download):
    datamodule = datamodule_class(data_dir=str(tmp_path), download=download)
    with pytest.raises(DataNotFoundError) as error:
        datamodule.setup()
        datamodule.train_dataloader()
    message = str(error.value)
    assert str(tmp_path) in message
    for part in expected_parts:
        assert part in message
    assert isinstance(error.value, FileNotFoundError)
    assert bool(no_network) == download  # a download was attempted (and refused) only when allowed
    assert "--data.download" not in message  # no such flag
    if datamodule_class is not CelebA:
        assert ("--data.init_args.download true" in message) == (not download)  # the real flag, when it helps
        assert ("Downloading them failed (URLError" in message) == download


def test_image_folder_missing_or_empty_root(tmp_path):
    with pytest.raises(DataNotFoundError, match="not a directory"):
        ImageFolderDataModule(root=str(tmp_path / "nowhere")).setup()
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataNotFoundError, match="no images found"):
        ImageFolderDataModule(root=str(tmp_path)).setup()


# ---------------------------------------------------------------------------------------------------------
# partial and damaged Fashion-MNIST files (copies of the real ones)

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def copy_fashion_mnist(source: Path, root: Path, names: tuple[str, ...], extract: bool = False) -> Path:
    """The ``names`` (without ``.gz``) copied into ``root/FashionMNIST/raw/``, gzipped or extracted; that folder."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        data = (source / f"{name}.gz").read_bytes()
        if extract:
            (raw / name).write_bytes(gzip.decompress(data))
        else:
            (raw / f"{name}.gz").write_bytes(data)
    return raw


def test_the_test_split_needs_only_the_test_files(fashion_mnist_raw_dir, tmp_path, no_network):
    from genzoo.evaluation.features import datamodule_split

    raw = copy_fashion_mnist(fashion_mnist_raw_dir, tmp_path, TEST_FILES)
    datamodule = FashionMNIST(data_dir=str(tmp_path))  # download: true, but nothing of the test split is missing
    datamodule.setup("test")
    assert len(datamodule.test_set) == 10000 and datamodule.test_set[0]["x"].shape == (1, 28, 28)
    # as an evaluation reference (the evaluation sets a datamodule up for "fit" and reads the split it needs)
    reference = FashionMNIST(data_dir=str(tmp_path), download=False)
    assert len(datamodule_split(reference, "test")) == 10000
    assert no_network == []

    with pytest.raises(DataNotFoundError) as error:
        reference.train_dataloader()
    message = str(error.value)
    assert message.startswith(f"FashionMNIST training data not found: missing {raw}/train-images-idx3-ubyte.gz; "
                              f"missing {raw}/train-labels-idx1-ubyte.gz. To fix: download ")
    assert "t10k" not in message and "--data.init_args.download true" in message


def test_training_needs_only_the_training_files(fashion_mnist_raw_dir, tmp_path):
    raw = copy_fashion_mnist(fashion_mnist_raw_dir, tmp_path, TRAIN_FILES)
    datamodule = FashionMNIST(data_dir=str(tmp_path), download=False)
    datamodule.setup("fit")
    assert (len(datamodule.train_set), len(datamodule.val_set)) == (55000, 5000)
    assert first_batch(datamodule)["x"].shape == (64, 1, 28, 28)
    with pytest.raises(DataNotFoundError, match="FashionMNIST test data not found: missing ") as error:
        datamodule.test_set  # noqa: B018
    assert all(f"{raw}/{name}.gz" in str(error.value) for name in TEST_FILES)


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda data: data[:len(data) // 2], "truncated: {path} (2211051 bytes; its gzip stream ends early"),
    (flip_middle_byte, "checksum mismatch: {path} (expected MD5 bef4ecab320f06d8554ea6380940ec79, got {md5})"),
    (lambda data: b"", "empty: {path} (0 bytes)"),
])
def test_a_damaged_gz_is_named(fashion_mnist_raw_dir, tmp_path, damage, expected):
    raw = copy_fashion_mnist(fashion_mnist_raw_dir, tmp_path, TEST_FILES)
    path = raw / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    datamodule = FashionMNIST(data_dir=str(tmp_path), download=False)
    datamodule.setup("test")
    with pytest.raises(CorruptDataError) as error:
        datamodule.test_set  # noqa: B018
    message = str(error.value)
    assert message.startswith("FashionMNIST test data damaged: ")
    assert expected.format(path=path, md5=hashlib.md5(path.read_bytes()).hexdigest()) in message
    assert "delete the damaged files, then download" in message and "t10k-labels" not in message
    assert isinstance(error.value, DataNotFoundError)


def test_a_damaged_gz_is_named_after_a_failed_download(fashion_mnist_raw_dir, tmp_path, no_network):
    raw = copy_fashion_mnist(fashion_mnist_raw_dir, tmp_path, TRAIN_FILES)
    path = raw / "train-labels-idx1-ubyte.gz"
    path.write_bytes(flip_middle_byte(path.read_bytes()))
    datamodule = FashionMNIST(data_dir=str(tmp_path))
    datamodule.prepare_data()  # tries to download the damaged and the missing files, and fails offline
    attempts = len(no_network)
    assert attempts > 0
    datamodule.setup("fit")
    with pytest.raises(CorruptDataError) as error:
        datamodule.train_set  # noqa: B018
    message = str(error.value)
    assert f"checksum mismatch: {path} (expected MD5 25c81989df183df01b3e8a0aad5dffbe" in message
    assert "train-images" not in message and "Downloading them failed (URLError" in message
    assert len(no_network) == attempts  # one download try per split


def test_extracted_files_load_like_the_gz_originals(fashion_mnist_raw_dir, tmp_path):
    copy_fashion_mnist(fashion_mnist_raw_dir, tmp_path, TEST_FILES, extract=True)
    extracted = FashionMNIST(data_dir=str(tmp_path), download=False)
    extracted.setup("test")
    original = FashionMNIST(data_dir=str(fashion_mnist_raw_dir.parent.parent), download=False)
    original.setup("test")
    for attribute in ("data", "targets"):
        assert torch.equal(getattr(extracted.test_set.dataset, attribute), getattr(original.test_set.dataset,
                                                                                   attribute))


def zero_after_header(header: int):
    return lambda data: data[:header] + bytes(len(data) - header)


@pytest.mark.parametrize(("name", "damage", "expected"), [
    ("t10k-images-idx3-ubyte", lambda data: data[:len(data) // 2],
     "truncated: {path} has 3920008 bytes, its header declares 7840016"),
    ("t10k-images-idx3-ubyte", lambda data: bytes(len(data)), "all zero: {path} (7840016 zero bytes"),
    ("t10k-images-idx3-ubyte", zero_after_header(16), "blank: every image in {path} is all zero"),
    ("t10k-images-idx3-ubyte", lambda data: data[:2] + b"\x0b" + data[3:],
     "not a uint8 IDX file of 3 dimensions: {path} (it starts with 00 00 0b 03, expected 00 00 08 03)"),
    ("t10k-images-idx3-ubyte", lambda data: data[:4] + (60000).to_bytes(4, "big") + data[8:],
     "wrong dimensions: {path} declares 60000x28x28, expected 10000x28x28"),
    ("t10k-labels-idx1-ubyte", lambda data: data[:13] + bytes([data[13] ^ 0xFF]) + data[14:],
     "bad labels: {path} holds label 254 at index 5 (labels are 0 to 9)"),
    ("t10k-labels-idx1-ubyte", zero_after_header(8), "bad labels: every label in {path} is 0"),
])
def test_a_damaged_extracted_file_is_named(fashion_mnist_raw_dir, tmp_path, name, damage, expected):
    raw = copy_fashion_mnist(fashion_mnist_raw_dir, tmp_path, TEST_FILES, extract=True)
    path = raw / name
    path.write_bytes(damage(path.read_bytes()))
    datamodule = FashionMNIST(data_dir=str(tmp_path), download=False)
    datamodule.setup("test")
    with pytest.raises(CorruptDataError) as error:
        datamodule.test_set  # noqa: B018
    assert expected.format(path=path) in str(error.value)


# ---------------------------------------------------------------------------------------------------------
# ImageFolder (CIFAR-10 test JPEGs) and digits


def test_image_folder_on_cifar_jpegs(cifar10_jpeg_test_dir):
    datamodule = ImageFolderDataModule(root=str(cifar10_jpeg_test_dir), image_size=32, val_size=0.1,
                                       test_size=500, batch_size=128)
    assert datamodule.data_shape == (3, 32, 32)
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (8500, 1000, 500)
    batch = first_batch(datamodule)
    assert batch["x"].shape == (128, 3, 32, 32) and batch["x"].dtype == torch.float32
    assert batch["x"].min() == -1.0 and batch["x"].max() == 1.0
    assert 0 <= batch["label"].min() and batch["label"].max() <= 9

    # at the native size the pixels are exactly the JPEG's, mapped from [0, 255] to [-1, 1]
    path, _ = datamodule.train_set.dataset.dataset.samples[datamodule.train_set.dataset.indices[0]]
    expected = torch.as_tensor(np.array(Image.open(path).convert("RGB")), dtype=torch.float32)
    expected = expected.permute(2, 0, 1) / 255 * 2 - 1
    torch.testing.assert_close(datamodule.train_set[0]["x"], expected)
    pickle.dumps(datamodule.train_set)  # worker processes on spawn platforms must be able to receive it


def test_image_folder_grayscale_resized(cifar10_jpeg_test_dir):
    datamodule = ImageFolderDataModule(root=str(cifar10_jpeg_test_dir), image_size=16, channels=1, crop="none",
                                       value_range=(0.0, 1.0))
    datamodule.setup()
    x = first_batch(datamodule)["x"]
    assert x.shape == (64, 1, 16, 16) and 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_digits(value_range):
    datamodule = Digits(value_range=value_range)
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (1497, 150, 150)
    batch = first_batch(datamodule)
    assert batch["x"].shape == (64, 1, 8, 8) and batch["x"].dtype == torch.float32
    low, high = value_range
    assert batch["x"].min() == low and batch["x"].max() == high
    levels = (batch["x"] - low) / (high - low) * 16  # the 17 grey levels 0..16 of the original data
    torch.testing.assert_close(levels, levels.round(), atol=1e-5, rtol=0)
    assert set(batch["label"].tolist()) <= set(range(10))

    resized = Digits(image_size=32, value_range=value_range)
    resized.setup()
    assert resized.data_shape == (1, 32, 32) and first_batch(resized)["x"].shape == (64, 1, 32, 32)


# ---------------------------------------------------------------------------------------------------------
# resumable, sharded sampling (ZooDataModule.train_dataloader)


def test_skipped_loader_resumes_where_the_interrupted_epoch_stopped():
    datamodule = Digits(batch_size=32)
    datamodule.setup()
    full_epoch = list(datamodule.train_dataloader())
    assert len(full_epoch) == 1497 // 32

    loader = datamodule.train_dataloader()
    assert isinstance(loader.sampler, ResumableSampler)
    loader.sampler.skip_batches(0, 3)
    assert_batches_equal(list(loader), full_epoch[3:])
    assert_batches_equal(list(loader), full_epoch)  # the skip applies once

    datamodule.trainer = fake_trainer(restarting=True, epoch=0, completed_batches=5)  # what a resumed fit sees
    assert_batches_equal(list(datamodule.train_dataloader()), full_epoch[5:])


def test_ranks_get_disjoint_equal_shards():
    datamodule = Digits(batch_size=16)
    datamodule.setup()
    shards = [list(ResumableSampler(datamodule.train_set, num_replicas=2, rank=rank, seed=0)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(datamodule.train_set) // 2
    assert not set(shards[0]) & set(shards[1])

    labels = []
    for rank in (0, 1):
        datamodule.trainer = fake_trainer(world_size=2, rank=rank)
        labels.append(torch.cat([batch["label"] for batch in datamodule.train_dataloader()]))
    assert len(labels[0]) == len(labels[1]) == (len(datamodule.train_set) // 2) // 16 * 16


# ---------------------------------------------------------------------------------------------------------
# training subsets (ZooDataModule.train_subset)


def labels_of(dataset) -> list[int]:
    return [int(dataset[i]["label"]) for i in range(len(dataset))]


def test_a_train_subset_is_a_fixed_seeded_part_of_the_training_split():
    full = Digits()
    full.setup()
    subset = Digits(train_subset=300)
    subset.setup()
    assert len(subset.train_set) == 300
    # drawn from the training split only, in its order; validation and test untouched
    chosen = list(subset.train_set.indices)
    assert chosen == sorted(set(chosen)) and 0 <= chosen[0] and chosen[-1] < len(full.train_set)
    assert all(torch.equal(subset.train_set[i]["x"], full.train_set[j]["x"]) for i, j in enumerate(chosen))
    assert labels_of(subset.val_set) == labels_of(full.val_set)
    assert labels_of(subset.test_set) == labels_of(full.test_set)
    # a function of the seed alone: a second build (another rank, a resumed run) gets the same images
    again = Digits(train_subset=300)
    again.setup()
    assert list(again.train_set.indices) == chosen
    other = Digits(train_subset=300, seed=1)
    other.setup()
    assert list(other.train_set.indices) != chosen
    assert Digits(train_subset=1497).training_subset(full.train_set).indices == list(range(1497))  # all of it


def test_ranks_and_epochs_see_only_the_subset():
    datamodule = Digits(batch_size=16, train_subset=200)
    datamodule.setup()
    images = {tuple(datamodule.train_set[i]["x"].flatten().tolist()) for i in range(200)}
    seen = []
    for rank in (0, 1):
        datamodule.trainer = fake_trainer(world_size=2, rank=rank)
        seen += [tuple(x.flatten().tolist()) for batch in datamodule.train_dataloader() for x in batch["x"]]
    assert len(seen) == 2 * (100 // 16 * 16) and set(seen) <= images


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "100"])
def test_impossible_train_subsets_are_refused(value):
    with pytest.raises(ValueError, match=f"Digits: train_subset must be a count >= 1 or None.*{value!r}"):
        Digits(train_subset=value)


def test_a_train_subset_larger_than_the_split_names_the_split_size():
    with pytest.raises(ValueError, match=r"Digits: train_subset=1498 is larger than the training split \(1497"):
        Digits(train_subset=1498).setup()


def test_the_evaluation_cache_identity_follows_the_train_subset():
    plain, subset, other = Digits(), Digits(train_subset=300), Digits(train_subset=400)
    assert "train_subset" not in plain.identity()  # unchanged for runs without one
    assert subset.identity()["train_subset"] == 300
    assert subset.identity() != other.identity() != plain.identity()


def test_the_identity_follows_every_setting_that_can_change_the_samples_and_no_other():
    class Noisy(Digits):  # keeps its setting only privately
        def __init__(self, noise: float = 0.0, **settings) -> None:
            super().__init__(**settings)
            self._noise = noise

    assert FashionMNIST(data_dir="a", batch_size=8, num_workers=2, download=False).identity() == \
        FashionMNIST(data_dir="b").identity()  # paths, loading and batching leave the samples alone
    assert FashionMNIST(image_size=32).identity() != FashionMNIST().identity()
    assert Noisy(0.1).identity() == Noisy(noise=0.1, batch_size=8).identity()
    identities = [Noisy().identity(), Noisy(0.1).identity(), Noisy(seed=1).identity(), Digits().identity()]
    assert all(a != b for i, a in enumerate(identities) for b in identities[i + 1:])
    assert Noisy(0.1).identity()["noise"] == 0.1 and Noisy(seed=1).identity()["seed"] == 1


def test_train_dataset_is_the_training_split_after_the_subset():
    datamodule = Digits(train_subset=300)
    train = datamodule.train_dataset()  # sets up
    assert train is datamodule.train_set and len(train) == 300
    assert datamodule.train_dataset() is train


# ---------------------------------------------------------------------------------------------------------
# CelebA crops


def position_coded_image(height: int = 218, width: int = 178) -> np.ndarray:
    """RGB uint8 image whose pixel (r, c) is (r, c, 7): the crop box can be read back from the pixels."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def test_celeba_crops_keep_the_documented_pixel_box():
    image = position_coded_image()
    top, left, height, width = CELEBA_2STAGE_BOX
    assert (top, left, height, width) == (45, 25, 128, 128)

    cropped = np.asarray(v2.Compose(celeba_pil_steps("2stage", 128))(Image.fromarray(image)))
    np.testing.assert_array_equal(cropped, image[45:173, 25:153])
    centre = np.asarray(v2.Compose(celeba_pil_steps("center140", 140))(Image.fromarray(image)))
    np.testing.assert_array_equal(centre, image[39:179, 19:159])

    # at 64 px the same box is downsampled: rows 45..172 map to about 45.5..171.5 in steps of 2
    small = image_transform((0.0, 1.0), celeba_pil_steps("2stage", 64))(Image.fromarray(image)) * 255
    assert small.shape == (3, 64, 64)
    torch.testing.assert_close(small[0, :, 0], torch.arange(64) * 2 + 45.5, atol=1.0, rtol=0)
    torch.testing.assert_close(small[1, 0, :], torch.arange(64) * 2 + 25.5, atol=1.0, rtol=0)
    whole = image_transform((-1.0, 1.0), celeba_pil_steps("none", 64))(Image.fromarray(image))
    assert whole.shape == (3, 64, 64)


def write_fake_celeba(root: Path, partition: list[int]) -> None:
    """A tiny tree in torchvision's CelebA layout: position-coded 218x178 faces + the five annotation files."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name in names:  # PNG content under the .jpg names: lossless, so pixels can be compared exactly
        Image.fromarray(position_coded_image()).save(folder / "img_align_celeba" / name, format="PNG")

    def write(filename: str, header: list[str] | None, row: list[int] | None = None, rows=None) -> None:
        lines = [str(len(names)), " ".join(header)] if header is not None else []
        for i, name in enumerate(names):
            lines.append(" ".join([name, *map(str, rows[i] if rows else row)]))
        (folder / filename).write_text("\n".join(lines) + "\n")

    write("list_eval_partition.txt", None, rows=[[split] for split in partition])
    write("identity_CelebA.txt", None, row=[1])
    write("list_bbox_celeba.txt", ["image_id", "x_1", "y_1", "width", "height"], row=[95, 71, 226, 313])
    write("list_landmarks_align_celeba.txt", [f"p{i}" for i in range(10)], row=[69, 109] * 5)
    write("list_attr_celeba.txt", [f"attr{i}" for i in range(40)], row=[1, -1] * 20)


def test_celeba_on_a_fake_tree(tmp_path, monkeypatch):
    # (torchvision cannot index a split holding exactly one image, hence at least two per split)
    write_fake_celeba(tmp_path, partition=[0, 0, 0, 0, 1, 1, 2, 2])
    # the fake annotation files cannot match torchvision's MD5s; everything else is the real code path
    monkeypatch.setattr(torchvision.datasets.CelebA, "_check_integrity", lambda self: True)
    datamodule = CelebA(data_dir=str(tmp_path), image_size=128, batch_size=2, value_range=(0.0, 1.0))
    assert datamodule.data_shape == (3, 128, 128)
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (4, 2, 2)
    sample = datamodule.train_set[0]
    assert list(sample) == ["x"]
    expected = torch.as_tensor(position_coded_image()[45:173, 25:153], dtype=torch.float32).permute(2, 0, 1)
    torch.testing.assert_close(sample["x"] * 255, expected, atol=1e-3, rtol=0)
    assert first_batch(datamodule)["x"].shape == (2, 3, 128, 128)


def test_celeba_split_all_trains_on_every_image(tmp_path, monkeypatch):
    write_fake_celeba(tmp_path, partition=[0, 0, 0, 0, 1, 1, 2, 2, 2])
    monkeypatch.setattr(torchvision.datasets.CelebA, "_check_integrity", lambda self: True)

    def build(**kwargs) -> CelebA:
        datamodule = CelebA(data_dir=str(tmp_path), image_size=16, batch_size=2, **kwargs)
        datamodule.setup()
        return datamodule

    def files(dataset) -> list[str]:  # DictDataset(torchvision CelebA)
        return list(dataset.dataset.filename)

    official, everything = build(), build(split="all")
    assert files(official.train_set) == [f"{i:06d}.jpg" for i in range(1, 5)]
    assert files(everything.train_set) == [f"{i:06d}.jpg" for i in range(1, 10)]
    # evaluation keeps the official partitions (which the training set then contains)
    assert files(everything.val_set) == files(official.val_set) == ["000005.jpg", "000006.jpg"]
    assert files(everything.test_set) == files(official.test_set) == ["000007.jpg", "000008.jpg", "000009.jpg"]
    assert len(build(split="all", train_subset=5).train_set) == 5
    with pytest.raises(ValueError, match="split must be one of .*'official', 'all'.*'train'"):
        CelebA(split="train")


# ---------------------------------------------------------------------------------------------------------
# 2-D toys


def nearest_mode_distances(x: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    distances = torch.cdist(x.double(), modes.double())
    return distances.min(dim=1)


def check_mixture(datamodule, expected_modes: torch.Tensor, expected_std: float) -> torch.Tensor:
    """Checks the training set against a uniform isotropic mixture; returns the per-mode counts."""
    torch.testing.assert_close(datamodule.modes, expected_modes.float())
    assert datamodule.std == pytest.approx(expected_std)
    datamodule.setup()
    x, label = datamodule.train_set.tensors["x"], datamodule.train_set.tensors["label"]
    assert x.dtype == torch.float32 and x.shape == (datamodule.num_samples, 2)
    distance, nearest = nearest_mode_distances(x, datamodule.modes)
    assert torch.equal(nearest, label)  # every sample is nearest to its own component
    assert distance.max() < 5 * expected_std * math.sqrt(2)
    residual = x - datamodule.modes[label]
    assert residual.std(dim=0).tolist() == pytest.approx([expected_std] * 2, rel=0.03)
    assert residual.mean(dim=0).abs().max() < 0.01 * expected_std * 5
    return torch.bincount(label, minlength=len(expected_modes))


def test_grid25():
    datamodule = Grid25()
    assert datamodule.data_shape == (2,) and datamodule.value_range == (-math.inf, math.inf)
    grid = torch.tensor([(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)], dtype=torch.float32)
    counts = check_mixture(datamodule, grid, 0.05)
    assert len(datamodule.train_set) == 100_000
    assert counts.min() > 0.9 * 4000 and counts.max() < 1.1 * 4000


def test_gaussians8():
    datamodule = Gaussians8()
    d = 1 / math.sqrt(2)
    centres = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (d, d), (d, -d), (-d, d), (-d, -d)]) * 2 / 1.414
    counts = check_mixture(datamodule, centres, 0.02 / 1.414)
    assert counts.min() > 0.9 * 12500 and counts.max() < 1.1 * 12500
    radius = datamodule.train_set.tensors["x"].norm(dim=1)
    assert radius.mean().item() == pytest.approx(2 / 1.414, abs=1e-3)


def test_gaussians25_wgangp():
    datamodule = Gaussians25WGANGP()
    grid = torch.tensor([(2 * i, 2 * j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float32)
    counts = check_mixture(datamodule, grid / 2.828, 0.05 / 2.828)
    assert counts.tolist() == [4000] * 25  # exactly 4000 points per centre
    label = datamodule.train_set.tensors["label"]
    assert not torch.equal(label[:25], torch.arange(25))  # shuffled once
    with pytest.raises(ValueError, match="num_samples"):
        Gaussians25WGANGP(num_samples=1001)


def test_swiss_roll_matches_sklearn():
    datamodule = SwissRoll(num_samples=2000, seed=3)
    datamodule.setup()
    points, _ = make_swiss_roll(2000, noise=0.25, random_state=3)
    expected = torch.as_tensor(points[:, [0, 2]] / 7.5, dtype=torch.float32)
    torch.testing.assert_close(datamodule.train_set.tensors["x"], expected)
    assert not torch.allclose(datamodule.val_set.tensors["x"][:100], expected[:100])  # fresh held-out points


def test_circle5_points_and_tangents():
    datamodule = Circle5(num_samples=500)
    datamodule.setup()
    x, tangents = datamodule.train_set.tensors["x"], datamodule.train_set.tensors["tangents"]
    assert x.shape == (500, 2) and tangents.shape == (500, 2, 1) and tangents.dtype == torch.float32
    angles = 2 * math.pi * torch.arange(5) / 5
    torch.testing.assert_close(datamodule.modes, torch.stack([angles.cos(), angles.sin()], dim=1))
    torch.testing.assert_close(x.norm(dim=1), torch.ones(500))
    assert torch.unique(x, dim=0).shape == (5, 2)  # noise_std=0: exactly the 5 points, 100 times each
    t = tangents[..., 0]
    torch.testing.assert_close(t.norm(dim=1), torch.ones(500))
    torch.testing.assert_close((t * x).sum(dim=1), torch.zeros(500), atol=1e-6, rtol=0)  # orthogonal
    torch.testing.assert_close(x[:, 0] * t[:, 1] - x[:, 1] * t[:, 0], torch.ones(500))  # counter-clockwise

    batch = first_batch(Circle5(batch_size=10, num_samples=50))
    assert batch["tangents"].shape == (10, 2, 1)

    noisy = Circle5(num_samples=500, noise_std=0.01)
    noisy.setup()
    residual = noisy.train_set.tensors["x"] - x
    assert residual.std().item() == pytest.approx(0.01, rel=0.1)
    torch.testing.assert_close(noisy.train_set.tensors["tangents"], tangents)


@pytest.mark.parametrize("toy_class", [Grid25, Gaussians8, Gaussians25WGANGP, SwissRoll])
def test_toys_are_deterministic_per_seed(toy_class):
    def points(seed, split="train_set"):
        datamodule = toy_class(num_samples=1000, seed=seed)
        datamodule.setup()
        return getattr(datamodule, split).tensors["x"]

    assert torch.equal(points(0), points(0))
    assert not torch.equal(points(0), points(1))
    assert not torch.equal(points(0), points(0, "val_set")) and not torch.equal(points(0, "val_set"),
                                                                                  points(0, "test_set"))


def test_toys_do_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Grid25(num_samples=1000).setup()
    Circle5(noise_std=0.1).setup()
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------------------------------
# argument validation


@pytest.mark.parametrize(("build", "argument"), [
    (lambda: Digits(batch_size=0), "batch_size"),
    (lambda: Digits(val_size=-1), "val_size"),
    (lambda: Digits(test_size=1.5), "test_size"),
    (lambda: FashionMNIST(val_size=1.0), "val_size"),
    (lambda: MNIST(image_size=3), "image_size"),
    (lambda: MNIST(value_range=(0.0, 255.0)), "value_range"),
    (lambda: CelebA(crop="square"), "crop"),
    (lambda: CelebA(image_size=2), "image_size"),
    (lambda: ImageFolderDataModule(root="x", crop="diagonal"), "crop"),
    (lambda: ImageFolderDataModule(root="x", channels=2), "channels"),
    (lambda: Grid25(num_samples=0), "num_samples"),
    (lambda: Circle5(noise_std=-0.1), "noise_std"),
    (lambda: Gaussians8(num_val_samples=-5), "num_val_samples"),
])
def test_bad_arguments_name_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


def test_split_sizes_that_leave_no_training_data():
    with pytest.raises(ValueError, match="val_size"):
        Digits(val_size=1000, test_size=900).setup()
