"""Feature extractors: the whole Inception/VGG16 path with weights made here, the registry, and weight lookup."""

from __future__ import annotations

import pytest
import torch

from genzoo.evaluation.extractors import build_extractor
from genzoo.evaluation.extractors.pretrained import InceptionExtractor
from genzoo.evaluation.metrics import frechet_distance
from tests.helpers import spread_inception_logits


def grey_images(n: int, seed: int = 0, size: int = 28) -> torch.Tensor:
    """Smooth random grey images in [-1, 1] (blurred noise, so resizing matters)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear") * 2 - 1


def test_inception_path_resize_range_dtype_and_batching(random_inception_weights):
    extractor = build_extractor(f"inception:{random_inception_weights}")
    assert isinstance(extractor, InceptionExtractor)
    x = grey_images(3)
    features = extractor(x, (-1.0, 1.0))
    assert features.shape == (3, 2048) and features.dtype == torch.float32
    assert features.std(0).mean() > 0, "features do not depend on the images"
    # the same images in another value range, as RGB, and batch by batch give the same features
    torch.testing.assert_close(extractor((x + 1) / 2, (0.0, 1.0)), features)
    torch.testing.assert_close(extractor(x.expand(-1, 3, -1, -1), (-1.0, 1.0)), features)
    torch.testing.assert_close(torch.cat([extractor(x[:1], (-1.0, 1.0)), extractor(x[1:], (-1.0, 1.0))]), features,
                               rtol=1e-4, atol=1e-5)
    assert extractor.protocol()["weights"] == __import__("hashlib").sha256(
        random_inception_weights.read_bytes()).hexdigest()[:16]


def test_inception_fid_equals_torchmetrics_tf_compatible_fid(random_inception_weights):
    """Our FID on the Inception path equals torchmetrics' FID with TF-style resizing (antialias=False) on the
    same uint8 images and weights file."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = grey_images(5, seed=1, size=32), grey_images(5, seed=2, size=32) * 0.8
    extractor = build_extractor(f"inception:{random_inception_weights}")
    ours = frechet_distance(extractor(fake, (-1.0, 1.0)), extractor(real, (-1.0, 1.0)))
    metric = FrechetInceptionDistance(feature_extractor_weights_path=str(random_inception_weights), antialias=False)
    metric.set_dtype(torch.float64)

    def to_uint8(x):
        return ((x + 1) / 2 * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)

    metric.update(to_uint8(real), real=True)
    metric.update(to_uint8(fake), real=False)
    reference = float(metric.compute())
    assert ours > 0
    assert ours == pytest.approx(reference, rel=1e-4)


def test_inception_logits_come_from_the_pass_that_gives_the_features(random_inception_weights):
    extractor = build_extractor(f"inception:{random_inception_weights}")
    spread_inception_logits(extractor)
    x = grey_images(3)
    features, logits = extractor.with_logits(x, (-1.0, 1.0))
    assert logits.shape == (3, 1008) and logits.dtype == torch.float32 and logits.std() > 1
    torch.testing.assert_close(features, extractor(x, (-1.0, 1.0)))
    # "unbiased": pool3 times the fc weights without the fc bias, as the Inception Score's reference code
    torch.testing.assert_close(logits, features @ extractor.net.fc.weight.T, rtol=1e-4, atol=1e-4)
    assert extractor.gives_logits and not build_extractor("pixels").gives_logits


def test_inception_weights_from_the_environment_and_clear_errors(random_inception_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_INCEPTION_WEIGHTS", str(random_inception_weights))
    with pytest.warns(UserWarning, match="not the published"):
        assert build_extractor("inception").weights_path == random_inception_weights
    monkeypatch.setenv("GENZOO_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="GENZOO_INCEPTION_WEIGHTS"):
        build_extractor("inception")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match=r"corrupt.pth is not readable \(truncated or corrupt"):
        build_extractor(f"inception:{corrupt}")
    # no path anywhere and no network: the error says what to download and where to point the variable
    monkeypatch.delenv("GENZOO_INCEPTION_WEIGHTS")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="weights-inception-2015-12-05-6726825d.pth.*GENZOO_INCEPTION_WEIGHTS"):
        build_extractor("inception")


def test_inception_download_goes_to_the_hub_cache(random_inception_weights, tmp_path, monkeypatch):
    """With internet (simulated), the file lands in the torch hub cache and is reused from there."""
    import shutil

    monkeypatch.delenv("GENZOO_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    calls = []

    def fake_download(url, destination, progress=True):
        calls.append(url)
        shutil.copy(random_inception_weights, destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.warns(UserWarning):
        first = build_extractor("inception")
    with pytest.warns(UserWarning):
        build_extractor("inception")
    assert len(calls) == 1 and calls[0].endswith("weights-inception-2015-12-05-6726825d.pth")
    assert first.weights_path.parent == tmp_path / "torch-home" / "hub" / "checkpoints"


def test_vgg16_fc2_features_with_local_weights(tmp_path):
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "vgg16.pth"
    torch.save({k: v.half() for k, v in torchvision.models.vgg16().state_dict().items()}, weights)
    extractor = build_extractor(f"vgg16:{weights}")
    x = grey_images(3)
    features = extractor(x, (-1.0, 1.0))
    assert features.shape == (3, 4096) and bool((features >= 0).all())  # after fc2's ReLU
    torch.testing.assert_close(extractor(x.expand(-1, 3, -1, -1), (-1.0, 1.0)), features)
    assert extractor.protocol()["layer"] == "fc2_relu"


def test_registry_and_pixels():
    with pytest.raises(ValueError, match="unknown feature extractor 'nope'"):
        build_extractor("nope")
    pixels = build_extractor("pixels")
    x = grey_images(2, size=8)
    torch.testing.assert_close(pixels(x, (-1.0, 1.0)), ((x + 1) / 2).flatten(1))
    points = torch.randn(5, 2) * 10
    torch.testing.assert_close(pixels(points, (float("-inf"), float("inf"))), points)
    with pytest.raises(ValueError, match="takes no argument"):
        build_extractor("pixels:x")
    pixels.train()
    assert not pixels.training
