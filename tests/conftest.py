"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# datasets kept next to the repository (read-only): <repo>/../shared/data
SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared_path(relative: str) -> Path:
    path = SHARED_DATA_DIR / relative
    if not path.exists():
        pytest.skip(f"shared test data {path} not found")
    return path


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and OpenMP spinning is very slow when other work shares
    the cores (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fashion_mnist_raw_dir() -> Path:
    """The original Fashion-MNIST ``*-ubyte.gz`` files (read-only; copy or link before torchvision writes)."""
    return _shared_path("FashionMNIST/raw")


@pytest.fixture(scope="session")
def cifar10_jpeg_test_dir() -> Path:
    """The CIFAR-10 test split as JPEGs in ImageFolder layout: ``<class_name>/<NNNN>.jpg``."""
    return _shared_path("cifar10-jpeg-test")


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory) -> Path:
    """A weights file for torch-fidelity's FID Inception-v3 with random (PyTorch default) initialisation:
    the real architecture and code path, meaningless numbers (the published weights cannot be had offline)."""
    from genzoo.evaluation.extractors.pretrained import save_random_inception_weights

    return save_random_inception_weights(tmp_path_factory.mktemp("weights") / "random-inception.pth")


@pytest.fixture(scope="session", autouse=True)
def offline_evaluation_environment(tmp_path_factory, random_inception_weights):
    """What configs' Evaluation callbacks look up, made here: classifier extractors for digits (8 px) and
    Fashion-MNIST (random weights: the tests check the plumbing, not the numbers), random Inception weights and
    a private reference cache. Set in os.environ so that CLI subprocesses (DDP) see them too."""
    import os

    from genzoo.evaluation.extractors.classifier import ClassifierNet, save_classifier

    directory = tmp_path_factory.mktemp("extractors")
    for name, channels, size in (("digits", 1, 8), ("fashion_mnist", 1, 28), ("fashion_mnist_32", 1, 32)):
        save_classifier(directory / f"{name}.pt", ClassifierNet(channels, 10, size), name, 0.0)
    values = {"GENZOO_EXTRACTORS_DIR": str(directory), "GENZOO_INCEPTION_WEIGHTS": str(random_inception_weights),
              "GENZOO_CACHE_DIR": str(tmp_path_factory.mktemp("genzoo-cache"))}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
