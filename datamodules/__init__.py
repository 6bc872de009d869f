"""Datamodules of the zoo: dict batches ``{"x": ..., "label"?: ..., "tangents"?: ...}`` (see ``base``)."""

from .base import DataNotFoundError, DictDataset, ResumableSampler, TensorDictDataset, ZooDataModule
from .images import (
    CIFAR10,
    MNIST,
    CelebA,
    Digits,
    FashionMNIST,
    ImageDataModule,
    ImageFolderDataModule,
)
from .toys import Circle5, GaussianMixtureToy, Gaussians8, Gaussians25WGANGP, Grid25, SwissRoll, ToyDataModule

__all__ = [
    "CIFAR10",
    "MNIST",
    "CelebA",
    "Circle5",
    "DataNotFoundError",
    "DictDataset",
    "Digits",
    "FashionMNIST",
    "GaussianMixtureToy",
    "Gaussians25WGANGP",
    "Gaussians8",
    "Grid25",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ResumableSampler",
    "SwissRoll",
    "TensorDictDataset",
    "ToyDataModule",
    "ZooDataModule",
]
