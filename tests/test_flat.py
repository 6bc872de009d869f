"""FlatGAN's geometry (zoo/ops/flat.py, zoo/nets/forms.py): the k-vector pairing, Haar frames, forward-mode
tangents and exterior derivatives against finite differences and closed forms, the flat-norm penalties,
the latent current and the subspace score."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from genzoo.nets.forms import DifferentialForm, Downsampler, FlatCritic, FlatGenerator, FlatOneForm
from genzoo.ops.flat import (
    LatentCurrent,
    comass_penalty,
    determinant,
    exterior_derivative,
    exterior_penalty,
    haar_frames,
    pairing,
    pushforward,
    subspace_alignment,
)


def frame(*columns) -> torch.Tensor:
    """One frame (1, d, k) from its k column vectors."""
    return torch.tensor(columns, dtype=torch.float64).T.unsqueeze(0)


# ---- pairing -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_closed_form_determinants_match_linalg(k):
    m = torch.randn(16, k, k, dtype=torch.float64)
    torch.testing.assert_close(determinant(m), torch.linalg.det(m))


def test_pairing_on_hand_examples():
    e1, e2, e3 = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)
    assert pairing(frame(e1, e2), frame(e1, e2)).item() == 1.0
    assert pairing(frame(e1, e2), frame(e2, e1)).item() == -1.0  # orientation
    assert pairing(frame(e1, e2), frame((2.0, 0, 0), e2)).item() == 2.0  # area
    assert pairing(frame(e1, e2), frame(e1, e3)).item() == 0.0  # a plane meeting e1∧e2 in a line
    assert pairing(frame(e1, e2), frame((1.0, 1.0, 0), e2)).item() == 1.0  # a shear keeps e1∧e2
    # |v|² = det(VᵀV) is the squared k-area: the unit square spanned by (1,1,0)/√2 and e3
    v = frame((1 / math.sqrt(2), 1 / math.sqrt(2), 0), e3)
    assert pairing(v, v).item() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pairing_is_invariant_under_sl_k_and_scales_with_det(k):
    g = torch.Generator().manual_seed(k)
    v = torch.randn(8, 6, k, generator=g, dtype=torch.float64)
    w = torch.randn(8, 6, k, generator=g, dtype=torch.float64)
    a = torch.randn(8, k, k, generator=g, dtype=torch.float64)
    a_sl = a / torch.linalg.det(a).abs().pow(1 / k).view(8, 1, 1)
    a_sl[torch.linalg.det(a_sl) < 0, :, 0] *= -1  # det = +1
    torch.testing.assert_close(pairing(v @ a_sl, w), pairing(v, w))
    torch.testing.assert_close(pairing(v, w @ a_sl), pairing(v, w))
    torch.testing.assert_close(pairing(v @ a, w), torch.linalg.det(a) * pairing(v, w))


# ---- Haar frames ---------------------------------------------------------------------------------------------
def test_haar_frames_are_orthonormal_with_image_shapes():
    q = haar_frames(64, (1, 4, 4), 3, torch.Generator().manual_seed(0))
    assert q.shape == (64, 1, 4, 4, 3)
    q = q.flatten(1, -2)
    torch.testing.assert_close(q.transpose(1, 2) @ q, torch.eye(3).expand(64, 3, 3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="0 <= k <= d"):
        haar_frames(2, (2,), 3)


def test_haar_frames_are_uniform_and_uniformly_oriented():
    g = torch.Generator().manual_seed(0)
    # unit vectors in R^2: the angle is uniform on (-pi, pi]
    v = haar_frames(20000, (2,), 1, g)[..., 0]
    angles = torch.atan2(v[:, 1], v[:, 0]).double().numpy()
    assert stats.kstest(angles, stats.uniform(loc=-math.pi, scale=2 * math.pi).cdf).pvalue > 1e-3
    # oriented planes in R^3: the normal q1 × q2 is uniform on the sphere (mean 0, second moment I/3)
    q = haar_frames(20000, (3,), 2, g)
    normal = torch.linalg.cross(q[..., 0], q[..., 1], dim=1)
    assert normal.mean(0).abs().max() < 0.03
    torch.testing.assert_close(normal.T @ normal / len(normal), torch.eye(3) / 3, atol=0.02, rtol=0)
    # full frames of R^3: det ±1, each orientation half the time
    dets = torch.linalg.det(haar_frames(20000, (3,), 3, g))
    torch.testing.assert_close(dets.abs(), torch.ones_like(dets), atol=1e-4, rtol=0)
    assert abs(float((dets > 0).float().mean()) - 0.5) < 0.02
    # without the sign correction QR's frames are not uniform: the first column leans towards e1
    raw = torch.linalg.qr(torch.randn(20000, 2, 1, generator=g))[0][:, :, 0]
    assert float((raw[:, 0] < 0).float().mean()) > 0.99 or float((raw[:, 0] > 0).float().mean()) > 0.99


# ---- forward-mode derivatives ------------------------------------------------------------------------------
def small_generator() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ELU(), nn.Linear(16, 6), nn.Tanh()).double()


def test_generator_tangents_match_finite_differences():
    g, z = small_generator(), torch.randn(5, 4, dtype=torch.float64)
    x, tangents = pushforward(g, z, 3)
    assert x.shape == (5, 6) and tangents.shape == (5, 6, 3)
    torch.testing.assert_close(x, g(z))
    for i in range(3):
        step = torch.zeros_like(z)
        step[:, i] = 1e-6
        torch.testing.assert_close(tangents[..., i], (g(z + step) - g(z - step)) / 2e-6, atol=1e-7, rtol=1e-6)
    x0, t0 = pushforward(g, z, 0)
    assert t0.shape == (5, 6, 0)


def test_generator_tangents_are_differentiable_like_the_authors_double_vjp():
    """Our forward-mode tangents give the generator loss the same parameter gradients as the authors' "rop"
    (two reverse passes)."""
    g, z = small_generator(), torch.randn(5, 4, dtype=torch.float64)
    weights = torch.randn(5, 6, 2, dtype=torch.float64)

    def loss_of(tangents):
        return (tangents * weights).sum() + tangents.square().sum()

    ours = torch.autograd.grad(loss_of(pushforward(g, z, 2)[1]), list(g.parameters()))
    zz = z.clone().requires_grad_(True)
    out = g(zz)
    rop = []
    for i in range(2):
        w = torch.zeros_like(out, requires_grad=True)
        (jt_w,) = torch.autograd.grad(out, zz, grad_outputs=w, create_graph=True)
        direction = torch.zeros_like(z)
        direction[:, i] = 1
        (jv,) = torch.autograd.grad(jt_w, w, grad_outputs=direction, create_graph=True)
        rop.append(jv)
    authors = torch.autograd.grad(loss_of(torch.stack(rop, -1)), list(g.parameters()))
    for a, b in zip(ours, authors, strict=True):
        torch.testing.assert_close(a, b)


def test_exterior_derivative_of_a_one_form_in_the_plane_is_the_curl():
    """ω = a_1 dx + a_2 dy, dω = (∂_x a_2 − ∂_y a_1) dx∧dy, so dω(v0, v1) = curl · det[v0 v1]."""
    def form(x, v):  # ⟨a(x), v_1⟩ with a(x) = (−x_1² x_2, x_1 x_2)
        a = torch.stack([-x[:, 0] ** 2 * x[:, 1], x[:, 0] * x[:, 1]], dim=1)
        return (a * v[..., 0]).sum(1)

    x = torch.randn(7, 2, dtype=torch.float64)
    frames = haar_frames(7, (2,), 2, torch.Generator().manual_seed(0)).double() * 1.7
    curl = x[:, 1] + x[:, 0] ** 2  # ∂_x(x y) − ∂_y(−x² y)
    expected = curl * torch.linalg.det(frames)
    torch.testing.assert_close(exterior_derivative(form, x, frames), expected)


def test_exterior_derivative_matches_finite_differences_and_vanishes_on_closed_forms():
    torch.manual_seed(1)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4)).double() for _ in range(2)]

    def two_form(x, v):
        omega = torch.stack([net(x) for net in nets], dim=2)
        return determinant(v.transpose(1, 2) @ omega)

    x = torch.randn(5, 4, dtype=torch.float64)
    frames = torch.randn(5, 4, 3, dtype=torch.float64)
    fd = 0
    for i in range(3):
        rest = torch.cat([frames[..., :i], frames[..., i + 1:]], dim=-1)
        step = 1e-6 * frames[..., i]
        fd = fd + (-1) ** i * (two_form(x + step, rest) - two_form(x - step, rest)) / 2e-6
    torch.testing.assert_close(exterior_derivative(two_form, x, frames), fd, atol=1e-7, rtol=1e-6)

    potential = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    def exact_one_form(x, v):  # dφ(v) = ⟨∇φ(x), v⟩, so d(dφ) = 0 (forward mode through the gradient)
        return (torch.func.vmap(torch.func.grad(lambda p: potential(p).squeeze()))(x) * v[..., 0]).sum(1)

    d = exterior_derivative(exact_one_form, x, frames[..., :2])
    torch.testing.assert_close(d, torch.zeros_like(d), atol=1e-12, rtol=0)


# ---- the differential form and its penalties -----------------------------------------------------------------
class Linear0Form(nn.Module):
    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c)

    def forward(self, x):
        return x.flatten(1) @ self.c


class ConstantCovector(nn.Module):
    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c)

    def forward(self, x):
        return self.c.expand(len(x), -1)


def test_form_is_f_plus_alpha_det_and_k0_is_the_zero_form():
    torch.manual_seed(0)
    zero, one = Linear0Form(torch.randn(3)), nn.Sequential(nn.Linear(3, 3))
    form = DifferentialForm((3,), zero, one, k=2, alpha=0.5)
    assert torch.equal(form.one_forms[0][0].weight, form.one_forms[1][0].weight)  # identical copies, as the code
    with torch.no_grad():
        form.one_forms[1][0].weight.add_(torch.randn(3, 3))
    x, v = torch.randn(4, 3), torch.randn(4, 3, 2)
    omega = torch.stack([net(x) for net in form.one_forms], dim=2)
    torch.testing.assert_close(form(x, v), zero(x) + 0.5 * torch.linalg.det(v.transpose(1, 2) @ omega))
    form0 = DifferentialForm((3,), zero, None, k=0)
    torch.testing.assert_close(form0(x), zero(x))
    with pytest.raises(ValueError, match="needs 2 tangent vectors"):
        form(x)
    with pytest.raises(ValueError, match="tangents must be shaped"):
        form(x, torch.randn(4, 3, 1))


def test_penalties_vanish_for_a_form_within_the_bounds_and_match_hand_values_outside():
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    c = torch.tensor([0.1, 0.0, 0.0, 0.0])
    # f = 0.1 x_1 (‖∇f‖ = 0.1) and a constant 1-form (dω_1 = 0), |ω(x)(v)| <= 0.1 |x_1| + 0.2 < 1 here
    form = DifferentialForm((4,), Linear0Form(c), ConstantCovector(torch.tensor([0.2, 0.0, 0.0, 0.0])), k=1, alpha=1.0)
    x = x.clamp(-3, 3)
    frames1, frames2 = haar_frames(8, (4,), 1), haar_frames(8, (4,), 2)
    assert comass_penalty(form(x, frames1), bound=1.0).item() == 0.0
    assert exterior_penalty(form, x, frames2, "bound").item() == 0.0  # |dω_1| + 2·0.1 = 0.2
    assert exterior_penalty(form, x, frames2, "exact").item() == 0.0
    # a steep 0-form: ‖∇f‖ = 3, so the bound variant is max(0 + 2·3 − 1, 0)² = 25 at every point
    steep = DifferentialForm((4,), Linear0Form(torch.tensor([3.0, 0, 0, 0])), ConstantCovector(torch.zeros(4)), k=1)
    assert exterior_penalty(steep, x, frames2, "bound").item() == pytest.approx(25.0, rel=1e-5)
    values = 3.0 * x[:, 0]
    expected = torch.relu(values.abs() - 1.0).square().mean()
    torch.testing.assert_close(comass_penalty(steep(x, frames1), 1.0), expected)
    # exact variant, k = 0: |∇f·v_0| = 3 |v_0,1| per point
    steep0 = DifferentialForm((4,), Linear0Form(torch.tensor([3.0, 0, 0, 0])), None, k=0)
    v0 = frames2[..., :1]
    expected = torch.relu(3.0 * v0[:, 0, 0].abs() - 1.0).square().mean()
    torch.testing.assert_close(exterior_penalty(steep0, x, v0, "exact"), expected)
    with pytest.raises(ValueError, match="variant must be one of"):
        exterior_penalty(steep0, x, v0, "loose")


def test_downsampler_is_the_authors_blur_and_pool():
    down = Downsampler((1, 32, 32), factor=4, sigma=2.0)
    assert down.kernel.shape == (1, 1, 17, 17) and down.out_shape == (1, 8, 8)
    assert float(down.kernel.sum()) == pytest.approx(1.0, abs=1e-6)
    flat = down(torch.ones(2, 1, 32, 32))
    assert flat.shape == (2, 1, 8, 8)
    torch.testing.assert_close(flat[..., 2:6, 2:6], torch.ones(2, 1, 4, 4))  # interior: a normalised blur
    assert list(down.state_dict()) == []  # fixed, rebuilt from its settings, not learned
    with pytest.raises(ValueError, match="must be >= 1 and divide"):
        Downsampler((1, 30, 30), factor=4)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_form_networks_fit_every_size(size):
    g = FlatGenerator(16, (3, size, size), (-1.0, 1.0), width=4)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert FlatCritic((3, size, size), width=2)(x).shape == (2,)
    for factor in (1, 2, 4):
        shape = (3, size // factor, size // factor)
        assert FlatOneForm((3, size, size), shape, width=2)(x).shape == (2, math.prod(shape))
    with pytest.raises(ValueError, match="supports image sizes 8, 16, 32 and 64"):
        FlatGenerator(16, (1, 28, 28))


# ---- the latent current and the score -------------------------------------------------------------------------
def test_latent_current_ranges_traversals_and_errors():
    current = LatentCurrent(6, (15.0, 1.0), "gaussian")
    z = current.sample(20000, torch.Generator().manual_seed(0))
    assert z[:, 0].abs().max() <= 7.5 and z[:, 0].abs().max() > 7.4
    assert z[:, 1].abs().max() <= 0.5 and z[:, 2:].std().item() == pytest.approx(1.0, abs=0.02)
    uniform = LatentCurrent(5, (2 * math.pi,), "uniform", 2 * math.pi).sample(20000, torch.Generator().manual_seed(0))
    assert uniform.abs().max() <= math.pi and uniform[:, 1:].abs().max() > 3.1
    sweep = current.traversal(z[:3], 1, 5)
    assert sweep.shape == (15, 6) and torch.equal(sweep[:5, 1], torch.linspace(-0.5, 0.5, 5))
    assert sweep[:, 0].abs().max() == 0 and torch.equal(sweep[:5, 2:], z[:1, 2:].expand(5, 4))
    with pytest.raises(ValueError, match="do not fit latent_dim"):
        LatentCurrent(1, (1.0, 1.0))
    with pytest.raises(ValueError, match="must be > 0"):
        LatentCurrent(4, (0.0,))
    with pytest.raises(ValueError, match="nuisance must be one of"):
        LatentCurrent(4, (1.0,), "cauchy")


def test_subspace_alignment_is_basis_free_and_per_direction_signed():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(10, 8, 2, generator=g)
    mix = torch.tensor([[2.0, 1.0], [0.5, -1.0]])
    score, per_direction = subspace_alignment(a @ mix, a)
    assert float(score) == pytest.approx(1.0, abs=1e-9)
    swapped_score, swapped = subspace_alignment(a.flip(-1), -a)
    assert float(swapped_score) == pytest.approx(1.0, abs=1e-9)  # the same plane, other basis and orientation
    orthogonal = torch.zeros(10, 8, 2)
    orthogonal[:, 2, 0] = orthogonal[:, 3, 1] = 1.0
    base = torch.zeros(10, 8, 2)
    base[:, 0, 0] = base[:, 1, 1] = 1.0
    assert float(subspace_alignment(orthogonal, base)[0]) == pytest.approx(0.0, abs=1e-12)
    same_score, same = subspace_alignment(base, -base)
    assert float(same_score) == pytest.approx(1.0) and same.tolist() == pytest.approx([-1.0, -1.0])
