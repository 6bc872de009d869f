"""Extractors with published ImageNet weights: the TF-compatible Inception-v3 (FID, KID, PRD, IMS) and VGG16
fc2 (improved precision/recall), both through torch-fidelity's ports with TF1-style bilinear resizing.

Weights come from, in order: the path in the spec (``"inception:/path/file.pth"``), an environment variable
(``GENZOO_INCEPTION_WEIGHTS`` / ``GENZOO_VGG16_WEIGHTS``), the torch hub cache, and finally a download into
that cache. Offline machines: download the file once elsewhere and point the variable at it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from genzoo.evaluation.extractors.base import (
    FeatureExtractor,
    file_sha256,
    load_state_dict_file,
    register_extractor,
    to_uint8_rgb,
)


def resolve_weights(argument: str | None, env_var: str, url: str, file_name: str, what: str) -> Path:
    """The weights file to use: explicit path, environment variable, hub cache, or a fresh download."""
    explicit = argument or os.environ.get(env_var)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            source = "the extractor spec" if argument else f"${env_var}"
            raise FileNotFoundError(f"{what} weights: {path} (from {source}) does not exist")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=False)
        except Exception as error:  # no network, proxy, HTTP error: all end the same way for the user
            raise RuntimeError(
                f"{what} weights are not in {cached} and could not be downloaded from {url} ({error}). "
                f"On a machine without internet, download that file elsewhere and set {env_var}=/path/to/it "
                f"(or pass '<extractor>:/path/to/it').") from error
    return cached


class PretrainedExtractor(FeatureExtractor):
    """Shared loading, fingerprinting and uint8 preprocessing for the torch-fidelity networks."""

    env_var: str
    url: str
    file_name: str
    official_sha256: str | None = None
    what: str

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        path = resolve_weights(weights_path, self.env_var, self.url, self.file_name, self.what)
        load_state_dict_file(path, f"{self.what} weights")  # a clear error for corrupt or foreign files
        self.weights_sha256 = file_sha256(path)
        if self.official_sha256 and self.weights_sha256 != self.official_sha256:
            warnings.warn(f"{path} is not the published {self.what} weights file (sha256 "
                          f"{self.weights_sha256[:16]}…): metrics from it do not compare with published ones",
                          stacklevel=2)
        self.weights_path = path
        self.net = self.build_network(str(path))
        self.net.requires_grad_(False)

    @classmethod
    def from_spec(cls, argument: str | None) -> PretrainedExtractor:
        return cls(argument)

    def build_network(self, path: str) -> torch.nn.Module:
        raise NotImplementedError

    def features(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        # uint8 rounding, grey images tiled to RGB: the images a published evaluation would have read from PNGs
        return self.net(to_uint8_rgb(x, value_range))[0]


@register_extractor("inception")
class InceptionExtractor(PretrainedExtractor):
    """Inception-v3 pool3 (2048-d) of the TF 2015-12-05 graph: the network behind published FID/KID numbers.

    Input is resized to 299x299 with TF1's ``resize_bilinear`` (no antialiasing, unlike torchmetrics' default)
    and scaled as ``(x - 128) / 128``. Its logits (1008 classes, without the fc bias, as the Inception Score's
    reference code and torch-fidelity's ``logits_unbiased``) come from the same pass."""

    dim = 2048
    gives_logits = True
    env_var = "GENZOO_INCEPTION_WEIGHTS"
    url = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
    file_name = "weights-inception-2015-12-05-6726825d.pth"
    official_sha256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
    what = "Inception-v3 (FID)"

    def build_network(self, path: str) -> torch.nn.Module:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                           feature_extractor_weights_path=path)

    def features_and_logits(self, x: torch.Tensor,
                            value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        pool3, logits = self.net(to_uint8_rgb(x, value_range))
        return pool3, logits

    def protocol(self) -> dict[str, str | int]:
        return {"extractor": "inception-v3-compat", "layer": "pool3", "dim": self.dim,
                "weights": self.weights_sha256[:16], "resize": "tf1-bilinear-299",
                "input": "uint8 RGB (rounded; grey tiled)"}


@register_extractor("vgg16")
class VGG16Extractor(PretrainedExtractor):
    """VGG16 fc2 after ReLU (4096-d), torchvision's ImageNet weights: the features of improved precision/recall
    (Kynkäänniemi et al.; torch-fidelity's ``prc``). TF1 bilinear resize to 224, ImageNet normalisation."""

    dim = 4096
    env_var = "GENZOO_VGG16_WEIGHTS"
    url = "https://download.pytorch.org/models/vgg16-397923af.pth"
    file_name = "vgg16-397923af.pth"
    what = "VGG16 (precision/recall)"

    def build_network(self, path: str) -> torch.nn.Module:
        from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

        return FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=path)

    def protocol(self) -> dict[str, str | int]:
        return {"extractor": "vgg16", "layer": "fc2_relu", "dim": self.dim, "weights": self.weights_sha256[:16],
                "resize": "tf1-bilinear-224", "input": "uint8 RGB (rounded; grey tiled), ImageNet-normalised"}


def save_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """A weights file for torch-fidelity's FID Inception-v3 with PyTorch's default (random) initialisation: the
    real architecture and code path with meaningless features, for tests and timing where the published weights
    cannot be had (``GENZOO_INCEPTION_WEIGHTS`` points at it)."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    class RandomInception(inception.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random initialisation
            return None

    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *args, **kwargs: {}
    try:
        torch.manual_seed(seed)
        net = RandomInception("inception-v3-compat", ["2048"])
    finally:
        inception.load_state_dict_from_url = original
    torch.save(net.state_dict(), path)
    return Path(path)
