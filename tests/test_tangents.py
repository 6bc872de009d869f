"""Tangent data for FlatGAN: image tangents, the TangentImages wrapper, time tangents and moving digits."""

from __future__ import annotations

import urllib.request
from urllib.error import URLError

import pytest
import torch
from torch.utils.data import DataLoader

import genzoo.datamodules
from genzoo.datamodules import Circle5, DataNotFoundError, Digits, FashionMNIST, MovingImages, TangentImages
from genzoo.datamodules.tangents import (
    TANGENT_TRANSFORMS,
    affine_warp,
    image_tangents,
    rotate,
    rotation_tangent,
    scale_tangent,
    thickness_tangent,
    time_tangents,
    translation_x_tangent,
)

LOW = -1.0  # background of images in (-1, 1)


def bump(size: int = 32, row: float | None = None, col: float | None = None, sigma: float = 2.5) -> torch.Tensor:
    """A Gaussian bump in (-1, 1) on the low background: [1, 1, size, size] (centred by default)."""
    centre = (size - 1) / 2
    row = centre if row is None else row
    col = centre if col is None else col
    rows = torch.arange(size, dtype=torch.float32).view(-1, 1)
    cols = torch.arange(size, dtype=torch.float32).view(1, -1)
    unit = torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma ** 2))
    return (LOW + 2 * unit).view(1, 1, size, size)


def bar(size: int = 32) -> torch.Tensor:
    x = torch.full((1, 1, size, size), LOW)
    x[..., size // 2 - 1:size // 2 + 1, 4:-4] = 1.0
    return x


# ------------------------------------------------------------------------------------------- image tangents

def test_rotation_tangent_vanishes_only_for_rotation_symmetric_images():
    symmetric, bar_tangent = rotation_tangent(bump(), LOW), rotation_tangent(bar(), LOW)
    assert symmetric.abs().max() < 1e-3
    assert bar_tangent.abs().max() > 0.1


def test_rotation_tangent_is_the_derivative_of_rotating_and_counter_clockwise():
    x = bump(row=15.5, col=22.0, sigma=3.0)  # right of the centre (15.5, 15.5)
    tangent = rotation_tangent(x, LOW)  # 1 degree each way
    derivative = rotation_tangent(x, LOW, step=0.01) * (1.0 / 0.01)
    torch.testing.assert_close(tangent, derivative, atol=0.02 * derivative.abs().max().item(), rtol=0)
    assert tangent.abs().max() > 0.05
    # counter-clockwise: the bump moves up (towards row 0), so the tangent is positive above it, negative below
    column = tangent[0, 0, :, 22]
    assert column[10:15].min() > 0 and column[17:22].max() < 0
    torch.testing.assert_close(rotate(x, 0.0, LOW), x, atol=1e-5, rtol=0)


def test_translation_x_tangent_is_minus_twice_the_column_derivative():
    x = bump(row=14.0, col=17.0, sigma=4.0)
    tangent = translation_x_tangent(x, LOW)
    central = torch.gradient(x[0, 0], dim=1)[0]  # (f[c + 1] - f[c - 1]) / 2
    torch.testing.assert_close(tangent[0, 0, :, 1:-1], -2 * central[:, 1:-1], atol=1e-4, rtol=0)  # interior
    cols = torch.arange(32.0).view(1, -1)
    analytic = -(cols - 17.0) / 16.0 * (x[0, 0] - LOW)  # d/dcol of 2 exp(-r^2 / 2 sigma^2)
    torch.testing.assert_close(tangent[0, 0], -2 * analytic, atol=0.05 * 2 * analytic.abs().max().item(), rtol=0)
    # moving right: the tangent is positive right of the bump
    assert tangent[0, 0, 14, 19] > 0 > tangent[0, 0, 14, 15]


def test_scale_tangent_points_outwards():
    x = bump(sigma=4.0)
    tangent = scale_tangent(x, LOW)
    centre = 15.5
    rows, cols = torch.arange(32.0).view(-1, 1), torch.arange(32.0).view(1, -1)
    radial = (rows - centre) * torch.gradient(x[0, 0], dim=0)[0] + (cols - centre) * torch.gradient(x[0, 0], dim=1)[0]
    # zoom(1 + s)(u) = x(u / (1 + s)) ~ x(u) - s u . grad x
    expected = -2 * 0.01 * radial
    torch.testing.assert_close(tangent[0, 0], expected, atol=0.05 * expected.abs().max().item(), rtol=0)
    assert tangent.min() > -1e-5 and tangent[0, 0, 15, 25] > 0.01  # a magnified bump is brighter at every point


@pytest.mark.parametrize("name", sorted(TANGENT_TRANSFORMS))
def test_background_images_have_no_tangents(name):
    """What enters from outside the image is the background value (not 0)."""
    x = torch.full((2, 3, 12, 20), LOW)
    assert TANGENT_TRANSFORMS[name](x, LOW).abs().max() == 0
    x01 = torch.zeros(2, 1, 12, 12)
    assert image_tangents(x01, [name], [1.0], value_range=(0.0, 1.0)).abs().max() == 0


def test_affine_warp_fills_with_the_background():
    x = torch.full((1, 1, 8, 8), 0.5)
    shifted = affine_warp(x, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], background=LOW)  # half the width to the left
    assert torch.allclose(shifted[..., :3], torch.tensor(0.5)) and torch.allclose(shifted[..., 5:], torch.tensor(LOW))


def test_thickness_is_x_minus_a_3x3_dilation():
    x = torch.rand(3, 2, 10, 9) * 2 - 1
    tangent = thickness_tangent(x, LOW)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-float("inf"))
    dilation = torch.stack([padded[..., i:i + 10, j:j + 9] for i in range(3) for j in range(3)]).amax(0)
    assert torch.equal(tangent, x - dilation)
    assert (tangent <= 0).all() and (tangent < 0).any()


def test_image_tangents_stacks_scaled_tangents_and_rejects_bad_names():
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    tangents = image_tangents(x, ["rotation", "thickness"], [10.0, 0.05])
    assert tangents.shape == (4, 1, 16, 16, 2)
    torch.testing.assert_close(tangents[..., 0], 10.0 * rotation_tangent(x, LOW))
    torch.testing.assert_close(tangents[..., 1], 0.05 * thickness_tangent(x, LOW))
    with pytest.raises(ValueError, match=r"unknown tangent transformation.*'shear'.*known:.*'rotation'"):
        image_tangents(x, ["shear"], [1.0])
    with pytest.raises(ValueError, match="one scale per transformation"):
        image_tangents(x, ["rotation", "thickness"], [1.0])


# ------------------------------------------------------------------------------------------- TangentImages

def test_tangent_images_cached_and_per_sample_agree():
    cached = TangentImages(Digits(image_size=16), cache=True, batch_size=32)
    lazy = TangentImages(Digits(image_size=16), cache=False, batch_size=32)
    cached.setup("fit")
    lazy.setup("fit")
    assert cached.data_shape == (1, 16, 16) and cached.value_range == (-1.0, 1.0)
    for split in ("train_set", "val_set", "test_set"):
        a, b = getattr(cached, split), getattr(lazy, split)
        assert len(a) == len(b) > 0
        batch_a = next(iter(DataLoader(a, batch_size=len(a))))
        batch_b = next(iter(DataLoader(b, batch_size=len(b))))
        assert batch_a.keys() == batch_b.keys() == {"x", "label", "tangents"}
        for key in batch_a:
            assert torch.equal(batch_a[key], batch_b[key]), (split, key)
    batch = next(iter(cached.train_dataloader()))
    assert batch["tangents"].shape == (32, 1, 16, 16, 2) and batch["x"].shape == (32, 1, 16, 16)
    assert batch["tangents"][..., 0].abs().max() > 0.1 and batch["tangents"][..., 1].min() < -0.01
    store = cached.train_set.cached
    torch.testing.assert_close(cached.tangents_at(store["x"]), store["tangents"], atol=1e-6, rtol=0)


def test_tangent_images_defaults_come_from_the_base():
    base = Digits(batch_size=17, seed=3, value_range=(0.0, 1.0))
    wrapped = TangentImages(base)
    assert (wrapped.batch_size, wrapped.num_workers, wrapped.seed, wrapped.value_range) == (17, 0, 3, (0.0, 1.0))
    assert wrapped.base is base and wrapped.transformations == ["rotation", "thickness"]
    assert wrapped.scales == [10.0, 0.05]
    assert TangentImages(base, batch_size=5, seed=9).batch_size == 5


def test_tangent_images_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"unknown tangent transformation.*'rotate'.*known"):
        TangentImages(Digits(), transformations=["rotate"], scales=[1.0])
    with pytest.raises(ValueError, match="2 transformations .* but 1 scales"):
        TangentImages(Digits(), transformations=["rotation", "thickness"], scales=[1.0])
    with pytest.raises(ValueError, match=r"needs an image datamodule.*Circle5 has data_shape \(2,\)"):
        TangentImages(Circle5())


def test_tangent_images_on_fashion_mnist(fashion_mnist_raw_dir):
    base = FashionMNIST(data_dir=str(fashion_mnist_raw_dir.parent.parent), image_size=32, val_size=0)
    datamodule = TangentImages(base, cache=False, batch_size=16)
    datamodule.setup("fit")
    assert datamodule.val_set is None and len(datamodule.train_set) == 60_000
    batch = next(iter(datamodule.train_dataloader()))
    tangents = batch["tangents"]
    assert tangents.shape == (16, 1, 32, 32, 2) and torch.isfinite(tangents).all()
    rotation, thickness = tangents[..., 0], tangents[..., 1]
    assert 0.5 < rotation.abs().amax() < 20 and rotation.abs().mean() > 0.05  # scale 10, pixel steps <= 2
    assert thickness.max() == 0 and -0.1 - 1e-6 <= thickness.min() < -0.02  # scale 0.05 of [-2, 0]
    torch.testing.assert_close(datamodule.tangents_at(batch["x"]), tangents, atol=1e-6, rtol=0)


def test_tangent_images_identity_names_the_base():
    fashion = TangentImages(FashionMNIST(image_size=32)).identity()
    digits = TangentImages(Digits(image_size=32)).identity()
    assert fashion != digits
    assert fashion["base"]["class"] == "genzoo.datamodules.images.FashionMNIST" and fashion["base"]["image_size"] == 32
    assert fashion["transformations"] == ["rotation", "thickness"] and fashion["scales"] == [10.0, 0.05]
    other_scales = TangentImages(FashionMNIST(image_size=32), scales=[1.0, 0.05]).identity()
    assert other_scales != fashion


def test_tangent_images_load_through_jsonargparse():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(TangentImages, "data")
    config = parser.parse_object({"data": {"base": {"class_path": "genzoo.datamodules.Digits",
                                                    "init_args": {"image_size": 16}},
                                           "scales": [5.0, 0.1]}})
    datamodule = parser.instantiate(config).data
    assert isinstance(datamodule.base, Digits) and datamodule.base.image_size == 16
    assert datamodule.scales == [5.0, 0.1] and datamodule.data_shape == (1, 16, 16)


# ------------------------------------------------------------------------------------------- time tangents

def test_time_tangents_shapes_and_values():
    video = torch.arange(2 * 3 * 1 * 2 * 2, dtype=torch.float32).view(2, 3, 1, 2, 2) ** 2
    frames, tangents = time_tangents(video, scale=0.5)
    assert frames.shape == (4, 1, 2, 2) and tangents.shape == (4, 1, 2, 2, 1)
    torch.testing.assert_close(frames, torch.cat([video[0, :2], video[1, :2]]))
    torch.testing.assert_close(tangents[2, ..., 0], 0.5 * (video[1, 1] - video[1, 0]))
    torch.testing.assert_close(tangents[1, ..., 0], 0.5 * (video[0, 2] - video[0, 1]))
    with pytest.raises(ValueError, match="T >= 2"):
        time_tangents(video[:, :1])


def test_moving_digits_frames_tangents_and_splits():
    datamodule = MovingImages(num_frames=6, batch_size=8)
    datamodule.setup("fit")
    train, val, test = datamodule.train_set, datamodule.val_set, datamodule.test_set
    assert datamodule.data_shape == (1, 32, 32) and len(train) == len(train.sequence_ids) * 5
    assert len(train.sequence_ids) + len(val.sequence_ids) + len(test.sequence_ids) == 1797
    assert not set(train.sequence_ids) & set(val.sequence_ids)
    assert not set(train.sequence_ids) & set(test.sequence_ids) and not set(val.sequence_ids) & set(test.sequence_ids)
    moved = 0
    for index in range(0, 5 * 20):
        item = train[index]
        sequence, t = item["sequence"].item(), index % 5
        assert sequence == train.sequence_ids[index // 5]
        video = datamodule.video(sequence)
        assert video.shape == (6, 1, 32, 32) and item["tangents"].shape == (1, 32, 32, 1)
        torch.testing.assert_close(item["x"], video[t])
        torch.testing.assert_close(item["x"] + item["tangents"][..., 0], video[t + 1])
        moved += int(item["tangents"].abs().max() > 0.1)
    assert moved > 80
    low, high = datamodule.value_range
    for sequence in range(0, 1797, 50):
        video = datamodule.video(sequence)
        assert video.min() >= low - 1e-6 and video.max() <= high + 1e-6
        mass = (video - low).sum(dim=(1, 2, 3))
        assert ((mass / mass[0] - 1).abs() < 0.1).all(), sequence  # nothing leaves the canvas
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["x"].shape == (8, 1, 32, 32) and batch["tangents"].shape == (8, 1, 32, 32, 1)
    assert batch["label"].dtype == torch.long and batch["sequence"].dtype == torch.long


def test_moving_digits_are_a_function_of_the_seed():
    def first_frames(seed: int) -> tuple[list[int], torch.Tensor]:
        datamodule = MovingImages(num_sequences=40, num_frames=4, seed=seed, batch_size=4, val_size=4, test_size=4)
        datamodule.setup("fit")
        return datamodule.test_set.sequence_ids, torch.stack([datamodule.train_set[i]["x"] for i in range(0, 30, 3)])

    ids, frames = first_frames(0)
    ids_again, frames_again = first_frames(0)
    other_ids, other_frames = first_frames(1)
    assert ids == ids_again and torch.equal(frames, frames_again)
    assert len(ids) == 4 and not torch.equal(frames, other_frames)


def test_moving_images_tangent_scale_and_value_range():
    plain = MovingImages(num_sequences=20, num_frames=3, batch_size=4, val_size=2, test_size=2)
    scaled = MovingImages(num_sequences=20, num_frames=3, batch_size=4, val_size=2, test_size=2, tangent_scale=3.0,
                          value_range=(0.0, 1.0))
    plain.setup("fit")
    scaled.setup("fit")
    a, b = plain.train_set[1], scaled.train_set[1]
    torch.testing.assert_close(b["x"], (a["x"] + 1) / 2)
    torch.testing.assert_close(b["tangents"], 3.0 * a["tangents"] / 2)


def test_moving_images_rejects_bad_settings():
    with pytest.raises(ValueError, match="source must be one of"):
        MovingImages(source="mnist")
    with pytest.raises(ValueError, match="canvas_size=20 is smaller than the 28x28 fashion_mnist images"):
        MovingImages(source="fashion_mnist", canvas_size=20)
    with pytest.raises(ValueError, match="num_frames must be >= 2"):
        MovingImages(num_frames=1)
    with pytest.raises(ValueError, match="num_sequences=5000 exceeds the 1797 digits"):
        MovingImages(num_sequences=5000).setup("fit")


def test_moving_fashion_mnist(fashion_mnist_raw_dir):
    datamodule = MovingImages(source="fashion_mnist", data_dir=str(fashion_mnist_raw_dir.parent.parent),
                              canvas_size=40, num_sequences=30, num_frames=4, batch_size=4, val_size=3, test_size=3)
    datamodule.setup("fit")
    video = datamodule.video(0)
    assert video.shape == (4, 1, 40, 40) and video.max() > 0.5
    mass = (video + 1).sum(dim=(1, 2, 3))
    assert ((mass / mass[0] - 1).abs() < 0.1).all()


def test_moving_fashion_mnist_without_files_names_them(tmp_path, monkeypatch):
    def refuse(request, *args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataNotFoundError,
                       match="FashionMNIST training data not found: missing .*train-images-idx3-ubyte.gz"):
        MovingImages(source="fashion_mnist", data_dir=str(tmp_path)).setup("fit")


def test_moving_digits_by_name():
    datamodule = genzoo.datamodules.build_datamodule("moving_digits", batch_size=8, data_dir="ignored")
    assert isinstance(datamodule, MovingImages) and datamodule.batch_size == 8
    assert genzoo.datamodules.BY_NAME["moving_digits"] is MovingImages


# ------------------------------------------------------------------------------------------- toys

def test_circle5_tangents_at_its_points():
    datamodule = Circle5(num_samples=10, batch_size=5, num_val_samples=0, num_test_samples=0)
    torch.testing.assert_close(datamodule.tangents_at(datamodule.modes), datamodule.tangents, atol=1e-6, rtol=0)
    far = datamodule.tangents_at(torch.tensor([[3.0, 0.0], [0.0, -0.5]]))  # any radius: the angle decides
    torch.testing.assert_close(far, torch.tensor([[[0.0], [1.0]], [[1.0], [0.0]]]), atol=1e-6, rtol=0)
