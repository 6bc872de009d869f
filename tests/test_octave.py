"""Octave layers: shapes for every α case, equivalence with a plain conv at α = 0, gradients to all four paths,
stride-2 semantics, the transposed layer, β weighting and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nets.octave import (
    OctaveConv2d,
    OctaveConvTranspose2d,
    OctaveNormAct,
    OctaveUpsample,
    octave_channels,
    set_octave_beta,
)


def pair(n: int, channels: int, alpha: float, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    high, low = octave_channels(channels, alpha)
    g = torch.Generator().manual_seed(0)
    x_high = torch.randn(n, high, size, size, generator=g)
    return x_high, (torch.randn(n, low, size // 2, size // 2, generator=g) if low else None)


@pytest.mark.parametrize("alpha_in, alpha_out", [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0), (0.25, 0.75), (0.99, 0.99)])
@pytest.mark.parametrize("stride", [1, 2])
def test_output_shapes_for_every_alpha_case(alpha_in, alpha_out, stride):
    conv = OctaveConv2d(200, 100, 3, alpha_in, alpha_out, stride=stride)
    high, low = pair(2, 200, alpha_in, 16)
    out = conv(high if low is None else (high, low))
    size = 16 // stride
    out_high, out_low = octave_channels(100, alpha_out)
    if alpha_out == 0:
        assert isinstance(out, torch.Tensor) and out.shape == (2, out_high, size, size)
    else:
        assert out[0].shape == (2, out_high, size, size) and out[1].shape == (2, out_low, size // 2, size // 2)
    assert octave_channels(100, 0.99) == (1, 99)  # the paper's "LOW"


def test_alpha_zero_is_a_standard_convolution_with_the_same_weights():
    conv = OctaveConv2d(6, 8, 3, alpha_in=0.0, alpha_out=0.0)
    assert conv.high_to_low is None and conv.low_to_high is None and conv.low_to_low is None
    plain = nn.Conv2d(6, 8, 3, padding=1, bias=False)
    plain.weight.data.copy_(conv.high_to_high.weight.data)
    x = torch.randn(3, 6, 10, 10)
    torch.testing.assert_close(conv(x), plain(x))


def test_gradients_reach_all_four_paths():
    conv = OctaveConv2d(8, 8, 3, 0.5, 0.5)
    y_high, y_low = conv(pair(2, 8, 0.5, 8))
    (y_high.square().mean() + y_low.square().mean()).backward()
    for name in ("high_to_high", "high_to_low", "low_to_high", "low_to_low"):
        grad = getattr(conv, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_the_four_paths_compute_the_octave_equations():
    conv = OctaveConv2d(4, 4, 3, 0.5, 0.5)
    x_high, x_low = pair(1, 4, 0.5, 8)
    y_high, y_low = conv((x_high, x_low))
    expected_high = conv.high_to_high(x_high) + F.interpolate(conv.low_to_high(x_low), scale_factor=2)
    expected_low = conv.low_to_low(x_low) + conv.high_to_low(F.avg_pool2d(x_high, 2))
    torch.testing.assert_close(y_high, expected_high)
    torch.testing.assert_close(y_low, expected_low)
    # stride 2, official semantics: L→H acts on the un-pooled low map and is not upsampled
    strided = OctaveConv2d(4, 4, 3, 0.5, 0.5, stride=2)
    y_high, y_low = strided((x_high, x_low))
    pooled_high = F.avg_pool2d(x_high, 2)
    torch.testing.assert_close(y_high, strided.high_to_high(pooled_high) + strided.low_to_high(x_low))
    torch.testing.assert_close(y_low, strided.low_to_low(F.avg_pool2d(x_low, 2))
                               + strided.high_to_low(F.avg_pool2d(pooled_high, 2)))


def reference_forward(layer: nn.Module, x_high: torch.Tensor, x_low: torch.Tensor | None):
    """The module docstring's equations with the four path modules run separately (no fused convolutions),
    ``avg_pool2d`` and ``interpolate``: what the fused forward must equal up to rounding."""
    pool, up = (lambda x: F.avg_pool2d(x, 2)), (lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))
    transposed = isinstance(layer, OctaveConvTranspose2d)
    strided = not transposed and layer.stride == 2
    high_in = pool(x_high) if strided else x_high
    y_high = layer.high_to_high(high_in)
    if x_low is not None:  # stride 2: the un-pooled low map already has the new high resolution
        y_high = y_high + (layer.low_to_high(x_low) if strided else up(layer.low_to_high(x_low)))
    if layer.high_to_low is None:
        return (y_high,)
    y_low = layer.high_to_low(pool(high_in))
    if x_low is not None:
        y_low = y_low + layer.low_to_low(pool(x_low) if strided else x_low)
    return y_high, y_low


ALPHA_CASES = [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0), (0.25, 0.75), (0.0, 0.0)]


def assert_matches_the_separate_paths(layer: nn.Module, channels: int, alpha_in: float, size: int) -> None:
    x_high, x_low = pair(2, channels, alpha_in, size)
    inputs = [x for x in (x_high, x_low) if x is not None]
    for x in inputs:
        x.requires_grad_(True)
    params = [p for p in layer.parameters()]
    out = layer(x_high if x_low is None else (x_high, x_low))
    out = out if isinstance(out, tuple) else (out,)
    expected = reference_forward(layer, x_high, x_low)
    assert len(out) == len(expected)
    g = torch.Generator().manual_seed(1)
    cotangents = [torch.randn(o.shape, generator=g) for o in expected]
    grads = torch.autograd.grad(out, inputs + params, cotangents)
    expected_grads = torch.autograd.grad(expected, inputs + params, cotangents)
    for got, want in zip(out, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("alpha_in, alpha_out", ALPHA_CASES)
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_forward_and_gradients_match_the_four_separate_paths(alpha_in, alpha_out, stride):
    """The forward fuses paths that share a resolution into one convolution and, on CPU, pools and adds the
    upsampled L→H through views; outputs, input gradients and the four paths' weight gradients equal the reference."""
    torch.manual_seed(0)
    layer = OctaveConv2d(16, 12, 3, alpha_in, alpha_out, stride=stride)
    assert_matches_the_separate_paths(layer, 16, alpha_in, 8)


@pytest.mark.parametrize("alpha_in, alpha_out", ALPHA_CASES)
def test_fused_transposed_forward_and_gradients_match_the_four_separate_paths(alpha_in, alpha_out):
    torch.manual_seed(0)
    layer = OctaveConvTranspose2d(16, 12, 4, alpha_in, alpha_out)
    assert_matches_the_separate_paths(layer, 16, alpha_in, 8)


def test_octave_upsample_matches_interpolate_then_the_separate_paths():
    torch.manual_seed(0)
    block = OctaveUpsample(16, 12, alpha_in=0.5, alpha_out=0.5)
    x_high, x_low = pair(2, 16, 0.5, 4)
    y_high, y_low = block((x_high, x_low))
    up = lambda x: F.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
    want_high, want_low = reference_forward(block.conv, up(x_high), up(x_low))
    torch.testing.assert_close(y_high, want_high, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_low, want_low, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_octave_conv_supports_double_backward_and_forward_mode(stride):
    """Gradient penalties differentiate through the critic twice and FlatGAN runs forward-mode AD through the
    generator: the fused convolutions and the view-based pooling and upsampled sum support both."""
    torch.manual_seed(0)
    layer = OctaveConv2d(4, 4, 3, 0.5, 0.5, stride=stride).double()
    x_high, x_low = (x.double().requires_grad_(True) for x in pair(1, 4, 0.5, 4))
    torch.autograd.gradcheck(lambda h, lo: layer((h, lo)), (x_high, x_low), check_forward_ad=True, fast_mode=True)
    torch.autograd.gradgradcheck(lambda h, lo: layer((h, lo)), (x_high, x_low), fast_mode=True)


def test_transposed_octave_convolution_doubles_both_branches():
    deconv = OctaveConvTranspose2d(64, 32, 4, 0.5, 0.5, stride=2, padding=1)
    y_high, y_low = deconv(pair(2, 64, 0.5, 8))
    assert y_high.shape == (2, 16, 16, 16) and y_low.shape == (2, 16, 8, 8)
    first = OctaveConvTranspose2d(100, 64, 2, 0.0, 0.5, padding=0)
    y_high, y_low = first(torch.randn(2, 100, 4, 4))
    assert y_high.shape == (2, 32, 8, 8) and y_low.shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="exactly double both branches"):
        OctaveConvTranspose2d(100, 64, 4, 0.0, 0.5, stride=1, padding=0)  # DCGAN's 1x1 -> 4x4 projection
    last = OctaveConvTranspose2d(32, 3, 4, 0.5, 0.0)
    assert last(pair(2, 32, 0.5, 16)).shape == (2, 3, 32, 32)


def test_octave_upsample_block_doubles_resolution():
    block = OctaveUpsample(16, 8, alpha_in=0.0, alpha_out=0.5)
    y_high, y_low = block(torch.randn(2, 16, 4, 4))
    assert y_high.shape == (2, 4, 8, 8) and y_low.shape == (2, 4, 4, 4)


def test_beta_weighting_scales_each_branch():
    block = OctaveNormAct(8, 0.5, norm=False, activation=nn.Identity())
    x_high, x_low = pair(2, 8, 0.5, 4)
    net = nn.Sequential(block, OctaveNormAct(8, 0.5, norm=False, activation=nn.Identity()))
    assert set_octave_beta(net, 0.7, 0.3) == 2
    y_high, y_low = block((x_high, x_low))
    torch.testing.assert_close(y_high, 0.7 * x_high)
    torch.testing.assert_close(y_low, 0.3 * x_low)
    assert float(net.state_dict()["0.beta_high"]) == pytest.approx(0.7)  # checkpoints keep β
    normed = OctaveNormAct(8, 0.5)
    assert isinstance(normed.norm_high, nn.BatchNorm2d) and normed.norm_low.num_features == 4


def test_eval_beta_weights_the_branches_in_eval_mode_only():
    block = OctaveNormAct(8, 0.5, norm=False, activation=nn.Identity(), eval_beta=(0.7, 0.3))
    x_high, x_low = pair(2, 8, 0.5, 4)
    assert set_octave_beta(block, 0.2, 0.8) == 1  # the schedule sets the training β only
    y_high, y_low = block((x_high, x_low))
    torch.testing.assert_close(y_high, 0.2 * x_high)
    torch.testing.assert_close(y_low, 0.8 * x_low)
    y_high, y_low = block.eval()((x_high, x_low))
    torch.testing.assert_close(y_high, 0.7 * x_high)
    torch.testing.assert_close(y_low, 0.3 * x_low)
    state = block.state_dict()
    assert (float(state["eval_beta_high"]), float(state["eval_beta_low"])) == pytest.approx((0.7, 0.3))
    assert float(state["beta_high"]) == pytest.approx(0.2)


def test_bad_octave_settings_are_clear_errors():
    with pytest.raises(ValueError, match="leaves the low-frequency branch of 1 channels empty"):
        OctaveConv2d(1, 8, alpha_in=0.5)
    with pytest.raises(ValueError, match=r"alpha_out must be in \[0, 1\)"):
        OctaveConv2d(8, 8, alpha_out=1.0)
    with pytest.raises(ValueError, match="stride 1 or 2"):
        OctaveConv2d(8, 8, stride=3)
    conv = OctaveConv2d(8, 8, 3, 0.0, 0.5)
    with pytest.raises(ValueError, match="odd spatial size"):
        conv(torch.randn(1, 8, 7, 7))
    with pytest.raises(ValueError, match="no low-frequency input"):
        conv((torch.randn(1, 8, 8, 8), torch.randn(1, 4, 4, 4)))
    with pytest.raises(ValueError, match="half the high resolution"):
        OctaveConv2d(8, 8)((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)))
