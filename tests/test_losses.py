import pytest
import torch
from torch import nn

from genzoo.adversarial import CriticSchedule
from genzoo.ops.losses import clip_parameters_, gradient_penalty, interpolate, wasserstein_critic_loss


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.weight.flatten()).sum(1)


def test_gradient_penalty_of_a_linear_critic_is_analytic():
    # D(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2 whatever the interpolates
    w = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]])  # one channel, 2x2 image: ||w|| = 5
    critic = LinearCritic(w)
    real, fake = torch.randn(8, 1, 2, 2), torch.randn(8, 1, 2, 2)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx(16.0, rel=1e-6)
    # it is differentiable in the critic's parameters: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    penalty.backward()
    torch.testing.assert_close(critic.weight.grad, 2 * 4 * w / 5)


def test_gradient_penalty_uses_per_sample_norms_over_all_dimensions():
    # D(x) = 0.5 ||x||^2 has gradient x̂: each sample's norm is over C, H and W together
    critic = lambda x: 0.5 * x.flatten(1).pow(2).sum(1)  # noqa: E731
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    alpha = torch.rand(6)
    points = alpha.view(-1, 1, 1, 1) * real + (1 - alpha.view(-1, 1, 1, 1)) * fake
    expected = ((points.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(gradient_penalty(critic, real, fake, alpha), expected)


def test_gradient_penalty_is_finite_where_the_gradient_vanishes():
    critic = LinearCritic(torch.zeros(2))
    penalty = gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2))
    penalty.backward()
    assert penalty.item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(critic.weight.grad).all()


def test_gradient_penalty_with_a_loss_scale_matches_the_unscaled_one():
    # the AMP recipe: a scaled backward seed, unscaled gradients: same value as without scaling
    critic = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    f = lambda x: critic(x).squeeze(1)  # noqa: E731
    real, fake, alpha = torch.randn(7, 5), torch.randn(7, 5), torch.rand(7)
    plain = gradient_penalty(f, real, fake, alpha)
    scaled = gradient_penalty(f, real, fake, alpha, loss_scale=65536.0)
    torch.testing.assert_close(plain, scaled)


def test_interpolate_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="differ in shape"):
        interpolate(torch.zeros(2, 3), torch.zeros(2, 4))


def test_interpolates_lie_on_the_segments():
    real, fake, alpha = torch.zeros(3, 2), torch.ones(3, 2), torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(interpolate(real, fake, alpha), (1 - alpha)[:, None].expand(3, 2))


def test_wasserstein_critic_loss_is_minus_the_estimate():
    assert wasserstein_critic_loss(torch.tensor([2.0, 4.0]), torch.tensor([1.0])).item() == -2.0


def test_clipping_bounds_every_parameter():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    clip_parameters_(net, 0.01)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())
    assert any(p.abs().max() == 0.01 for p in net.parameters())


def test_critic_schedule_counts_match_the_official_wgan_code():
    schedule = CriticSchedule(n_critic=5, warmup=True)
    counts = [schedule.critic_steps(g) for g in range(1001)]
    assert counts[:25] == [100] * 25
    assert counts[25:500] == [5] * 475
    assert counts[500] == 100 and counts[1000] == 100 and counts[501] == 5
    # Diters = 100 if gen_iterations < 25 or gen_iterations % 500 == 0 else 5 (WassersteinGAN main.py)
    reference = [100 if g < 25 or g % 500 == 0 else 5 for g in range(1001)]
    assert counts == reference
    assert CriticSchedule(n_critic=3).critic_steps(0) == 3


@pytest.mark.parametrize("kwargs", [{"n_critic": 0}, {"warmup_critic_steps": 0}, {"warmup_every": -1}])
def test_critic_schedule_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        CriticSchedule(**kwargs)

