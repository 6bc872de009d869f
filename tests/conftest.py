"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# datasets kept next to the repository (read-only): <repo>/../shared/data
SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared_path(relative: str) -> Path:
    path = SHARED_DATA_DIR / relative
    if not path.exists():
        pytest.skip(f"shared test data {path} not found")
    return path


@pytest.fixture(scope="session")
def fashion_mnist_raw_dir() -> Path:
    """The original Fashion-MNIST ``*-ubyte.gz`` files (read-only; copy or link before torchvision writes)."""
    return _shared_path("FashionMNIST/raw")


@pytest.fixture(scope="session")
def cifar10_jpeg_test_dir() -> Path:
    """The CIFAR-10 test split as JPEGs in ImageFolder layout: ``<class_name>/<NNNN>.jpg``."""
    return _shared_path("cifar10-jpeg-test")
