"""HingeGAN (SN-GAN's hinge objective): the loss, spectral normalisation, learning, bf16, DDP and its config."""

import functools

import lightning as L
import pytest
import torch

from genzoo.hinge import HingeGAN
from genzoo.nets import DCGANCritic, MLPCritic, MLPGenerator
from genzoo.ops.losses import hinge_critic_loss
from tests.helpers import ImagesDataModule, PointsDataModule, quiet_trainer


def small_hinge(**kwargs):
    settings = dict(latent_dim=2, generator=functools.partial(MLPGenerator, width=32, depth=2),
                    critic=functools.partial(MLPCritic, width=32, depth=2))
    return HingeGAN((2,), (-2.0, 2.0), **{**settings, **kwargs})


def test_hinge_loss_counts_only_scores_inside_the_margin():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # real: max(0, 1 − 2) = 0, max(0, 1 − 0.5) = 0.5; fake: max(0, 1 − 2) = 0, max(0, 1 + 0.5) = 1.5
    assert hinge_critic_loss(real, fake).item() == pytest.approx((0.5 + 1.5) / 2)
    assert hinge_critic_loss(real, fake, margin=3.0).item() == pytest.approx((1 + 2.5) / 2 + (1 + 3.5) / 2)


def test_defaults_are_sngan_and_the_shared_settings_pass_through():
    model = small_hinge(n_critic=2, ema_decay=0.99, max_generator_steps=7)
    assert model.phase_schedule.n_critic == 2 and model.generator_ema is not None and model.step_limit == 7
    assert {"margin", "spectral_normalization", "n_critic", "generator", "critic_optimizer"} <= set(model.hparams)
    optimizer = model.configure_optimizers()[0]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["betas"] == (0.0, 0.9)
    with pytest.raises(ValueError, match="margin must be > 0"):
        small_hinge(margin=0)


def test_spectral_norm_bounds_every_critic_layer():
    torch.manual_seed(0)
    model = HingeGAN((1, 16, 16), latent_dim=8, critic=functools.partial(DCGANCritic, width=8))
    layers = [m for m in model.critic.modules() if hasattr(m, "parametrizations")]
    assert layers, "no layer of the critic is spectrally normalised"
    for _ in range(30):  # power iterations run in training-mode forward passes
        model.critic(torch.randn(4, 1, 16, 16))
    for layer in layers:
        weight = layer.weight.flatten(1)
        assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.05)
    plain = HingeGAN((1, 16, 16), latent_dim=8, critic=functools.partial(DCGANCritic, width=8),
                     spectral_normalization=False)
    assert not any(hasattr(m, "parametrizations") for m in plain.critic.modules())


def test_hinge_gan_moves_samples_toward_the_data(tmp_path):
    L.seed_everything(0)
    dm = PointsDataModule(num_samples=512, batch_size=64, offset=3.0)
    model = small_hinge(n_critic=1)
    before = (model.sample(512).mean(0) - 3.0).norm().item()
    quiet_trainer(tmp_path, max_steps=1200).fit(model, dm)
    after = (model.sample(512).mean(0) - 3.0).norm().item()
    assert before > 3.5 and after < 0.2 * before, (before, after)


def test_bf16_mixed_training_stays_finite(tmp_path):
    model = HingeGAN((1, 8, 8), latent_dim=8, n_critic=2, critic=functools.partial(DCGANCritic, width=8))
    quiet_trainer(tmp_path, max_steps=12, precision="bf16-mixed").fit(model, ImagesDataModule())
    assert model.generator_step == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_two_process_ddp_through_the_cli_keeps_ranks_identical(tmp_path, monkeypatch):
    from tests.helpers import ddp_run_parameters
    from tests.test_cli import REPO, quick_args, small_config

    monkeypatch.chdir(REPO)
    config = small_config("configs/hinge_gan/digits.yaml", tmp_path)
    rank0 = ddp_run_parameters(["--config", config, *quick_args(tmp_path / "run", steps=12)], tmp_path)
    assert any(name.startswith("critic.") and "parametrizations" in name for name in rank0)
    assert any(name.startswith("generator.") for name in rank0)
