"""Datamodules of the zoo: dict batches ``{"x": ..., "label"?: ..., "tangents"?: ...}`` (see ``base``)."""

from .base import (
    CorruptDataError,
    DataNotFoundError,
    DictDataset,
    ResumableSampler,
    TensorDictDataset,
    UnreadableImageError,
    ZooDataModule,
)
from .images import (
    CIFAR10,
    MNIST,
    CelebA,
    Digits,
    FashionMNIST,
    ImageDataModule,
    ImageFolderDataModule,
)
from .synthetic import LatentManifold
from .tangents import MovingImages, TangentImages, image_tangents, time_tangents
from .toys import Circle5, GaussianMixtureToy, Gaussians8, Gaussians25WGANGP, Grid25, SwissRoll, ToyDataModule

BY_NAME = {"mnist": MNIST, "fashion_mnist": FashionMNIST, "cifar10": CIFAR10, "celeba": CelebA, "digits": Digits,
           "grid25": Grid25, "gaussians8": Gaussians8, "gaussians25": Gaussians25WGANGP, "swiss_roll": SwissRoll,
           "circle5": Circle5, "latent_manifold": LatentManifold, "moving_digits": MovingImages}


def build_datamodule(name: str, **settings) -> ZooDataModule:
    """A datamodule by short name (``fashion_mnist``, ``cifar10``, ``digits``, ...); settings it does not take
    (``data_dir`` for bundled or synthetic data, say) are dropped, and ``None`` values keep its defaults."""
    import inspect

    if name not in BY_NAME:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(BY_NAME)}")
    cls = BY_NAME[name]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{key: value for key, value in settings.items() if key in accepted and value is not None})


__all__ = [
    "UnreadableImageError",
    "BY_NAME",
    "build_datamodule",
    "CIFAR10",
    "MNIST",
    "CelebA",
    "Circle5",
    "CorruptDataError",
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
    "LatentManifold",
    "MovingImages",
    "ResumableSampler",
    "SwissRoll",
    "TangentImages",
    "TensorDictDataset",
    "ToyDataModule",
    "ZooDataModule",
    "image_tangents",
    "time_tangents",
]
