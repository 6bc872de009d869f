"""The FlatGAN model: its objective against hand computations (k = 0 is a WGAN critic with the flat penalties),
training on the 2-D circle, exact resume, bad input, and every config through the CLI under bf16-mixed and
2-process DDP."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from genzoo.cli import run_cli
from genzoo.datamodules import Circle5
from genzoo.flatgan import FlatGAN
from genzoo.nets import MLPCritic, MLPGenerator, MLPOneForm
from genzoo.nets.dcgan import DCGANGenerator
from genzoo.ops.flat import comass_penalty, exterior_penalty, haar_frames
from genzoo.ops.losses import wasserstein_critic_loss
from tests.helpers import ddp_run_parameters, prepared_config, quiet_trainer
from tests.test_cli import REPO, SHARED_DATA, quick_args

TWO_PI = 2 * math.pi


def circle_model(k: int = 1, **kwargs) -> FlatGAN:
    """The authors' 2-D demo model at a quarter of their widths."""
    settings = dict(data_shape=(2,), value_range=(-math.inf, math.inf), latent_dim=5, k=k,
                    oriented_ranges=[TWO_PI] * k, nuisance="uniform", nuisance_range=TWO_PI, alpha=0.1,
                    penalty_weight=10.0, n_critic=5,
                    # lambdas, as in the other model tests: checkpoints drop hyper-parameters that cannot be pickled
                    generator=lambda z, s, r: MLPGenerator(z, s, r, width=64, depth=3, activation="leaky_relu",
                                                           circle_lift=True),
                    zero_form=lambda s: MLPCritic(s, width=32, depth=3, activation="leaky_relu"),
                    one_form=lambda s, f: MLPOneForm(s, f, width=16, depth=2))
    settings.update(kwargs)
    return FlatGAN(**settings)


def hand_penalties(model: FlatGAN, x: torch.Tensor, seed: int):
    """The authors' penalties (flatgan.py L91-138, use_bound=True) written out with plain autograd."""
    g = torch.Generator().manual_seed(seed)
    k, n = model.k, len(x)
    frames1 = haar_frames(n, model.data_shape, k, g) if k else None
    frames2 = haar_frames(n, model.data_shape, k + 1, g)
    comass = torch.relu(model.critic(x, frames1).abs() - model.comass_bound).square().mean()
    points = x.clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(model.critic.zero_form(points).sum(), points, create_graph=True)
    value = (k + 1) * grads.norm(dim=1).mean()
    if k:
        d = 0
        for i in range(k + 1):  # finite differences of the k-part along each frame vector
            rest = torch.cat([frames2[..., :i], frames2[..., i + 1:]], dim=-1)
            step = 1e-3 * frames2[..., i]
            d = d + (-1) ** i * (model.critic.k_part(x + step, rest) - model.critic.k_part(x - step, rest)) / 2e-3
        value = value + d.abs()
    return comass, torch.relu(value - 1).square().mean()


@pytest.mark.parametrize("k", [0, 1])
def test_critic_loss_is_the_flat_objective_and_k0_is_a_wgan_critic(k):
    torch.manual_seed(0)
    model = circle_model(k=k, comass_bound=0.05)  # a tight λ so that the comass hinge is active
    with torch.no_grad():  # a steep critic so that the dω hinge is active too
        for p in model.critic.zero_form.parameters():
            p.mul_(3.0)
    dm = Circle5(num_samples=10, batch_size=10)
    dm.setup("fit")
    real = next(iter(dm.train_dataloader()))
    real = {"x": real["x"], "tangents": real["tangents"]}
    fake = model.fake_batch(10, torch.Generator().manual_seed(3))
    terms = model.critic_loss(real, fake, torch.Generator().manual_seed(7))
    comass, exterior = hand_penalties(model, real["x"], seed=7)
    assert comass > 0 and exterior > 0
    f = model.critic.zero_form
    if k == 0:  # WGAN: E f(fake) − E f(real), plus ρ·(comass + dω) hinges on |f| and on mean ‖∇f‖
        estimate = f(fake["x"]).mean() - f(real["x"]).mean()
        assert set(fake) == {"x"}
    else:
        estimate = model.critic(fake["x"], fake["tangents"]).mean() - model.critic(real["x"], real["tangents"]).mean()
    torch.testing.assert_close(terms["comass_penalty"], comass.detach())
    torch.testing.assert_close(terms["exterior_penalty"], exterior.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(terms["loss"], estimate + 10.0 * (comass + exterior), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(terms["flat_distance"], -estimate.detach())


@pytest.mark.parametrize(("k", "variant"), [(0, "bound"), (1, "bound"), (2, "bound"), (1, "exact")])
def test_one_evaluation_at_the_data_gives_the_separate_evaluations_loss_and_gradients(k, variant):
    # the critic step evaluates ω at the data once (FormAtPoints) for the real scores, the comass penalty and the
    # dω bound's 0-form gradient; evaluating each separately (as before) must give the same loss and gradients
    torch.manual_seed(0)
    model = circle_model(k=k, data_shape=(3,), oriented_ranges=[1.0] * k, comass_bound=0.05,
                         exterior_penalty=variant, generator=lambda z, s, r: MLPGenerator(z, s, r, width=16, depth=2))
    with torch.no_grad():  # steep enough that both hinges are active
        for p in model.critic.parameters():
            p.mul_(3.0)
    x = torch.randn(8, 3)
    real = {"x": x, "tangents": torch.randn(8, 3, k)} if k else {"x": x}
    fake = model.fake_batch(8, torch.Generator().manual_seed(1))
    fake = {key: value.detach() for key, value in fake.items()}
    shared = model.critic_loss(real, fake, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    frames = haar_frames(8, model.data_shape, k, g) if k else None
    comass = comass_penalty(model.critic(x, frames), model.comass_bound)
    exterior = exterior_penalty(model.critic, x, haar_frames(8, model.data_shape, k + 1, g), variant)
    scores = model.critic(x, real.get("tangents")), model.critic(fake["x"], fake.get("tangents"))
    separate = wasserstein_critic_loss(*scores) + model.penalty_weight * (comass + exterior)
    assert comass > 0 and exterior > 0
    torch.testing.assert_close(shared["loss"], separate, rtol=1e-5, atol=1e-7)
    params = list(model.critic.parameters())
    expected = torch.autograd.grad(separate, params)
    for got, want in zip(torch.autograd.grad(shared["loss"], params), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_generator_update_flows_through_its_tangents():
    torch.manual_seed(0)
    model = circle_model(k=1)
    fake = model.fake_batch(6, torch.Generator().manual_seed(0))
    assert fake["tangents"].shape == (6, 2, 1) and fake["tangents"].requires_grad
    # the loss through the tangent part alone (f removed) still reaches the generator's weights
    tangent_only = model.critic.k_part(fake["x"], fake["tangents"]).mean()
    grads = torch.autograd.grad(tangent_only, list(model.generator.parameters()))
    assert all(torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_training_pulls_samples_onto_the_data_points(tmp_path):
    L.seed_everything(0)
    adam = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.9))
    model = circle_model(k=1, generator_optimizer=adam, critic_optimizer=adam, max_generator_steps=250)
    dm = Circle5(num_samples=5, batch_size=5, num_val_samples=0, num_test_samples=0)

    def distance_to_data(samples: torch.Tensor) -> float:
        return float(torch.cdist(samples, dm.modes).min(dim=1).values.mean())

    before = distance_to_data(model.sample(2000))
    quiet_trainer(tmp_path, max_epochs=-1, max_steps=-1).fit(model, dm)
    after = distance_to_data(model.sample(2000))
    assert model.generator_step == 250
    assert before > 0.5 and after < 0.5 * before, (before, after)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    def run(ckpt_path=None, root="a"):
        L.seed_everything(5)
        model = circle_model(k=1, n_critic=2)
        checkpoint = ModelCheckpoint(dirpath=tmp_path / root, every_n_train_steps=1, save_top_k=-1, filename="{step}")
        trainer = quiet_trainer(tmp_path / root, max_steps=15, callbacks=[checkpoint], enable_checkpointing=True)
        trainer.fit(model, Circle5(num_samples=20, batch_size=5), ckpt_path=ckpt_path)
        return model

    full = run()
    resumed = run(ckpt_path=tmp_path / "a" / "step=7.ckpt", root="b")  # mid-epoch, mid-cycle
    assert resumed.generator_step == full.generator_step == 5
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_bad_input_gets_errors_that_name_the_problem():
    with pytest.raises(ValueError, match="one range per oriented latent coordinate"):
        circle_model(k=1, oriented_ranges=[1.0, 1.0])
    with pytest.raises(ValueError, match="k must be in"):
        circle_model(k=3, oriented_ranges=[1.0] * 3)
    with pytest.raises(ValueError, match="must not use batch norm"):
        FlatGAN((1, 8, 8), latent_dim=8, k=1, oriented_ranges=[1.0], downsample_factor=2,
                generator=functools.partial(DCGANGenerator, norm="batch"))
    with pytest.raises(ValueError, match="exterior_penalty must be"):
        circle_model(exterior_penalty="loose")
    with pytest.raises(ValueError, match="must be >= 1 and divide"):
        FlatGAN((1, 8, 8), latent_dim=8, k=1, oriented_ranges=[1.0], downsample_factor=3)
    model = circle_model(k=1)
    noise = torch.Generator().manual_seed(0)
    fake = model.fake_batch(4, noise)
    with pytest.raises(ValueError, match="needs batches with 'tangents'"):
        model.critic_loss({"x": torch.zeros(4, 2)}, fake, noise)
    with pytest.raises(ValueError, match=r"the model needs \(2, 1\)"):
        model.critic_loss({"x": torch.zeros(4, 2), "tangents": torch.zeros(4, 2, 2)}, fake, noise)
    with pytest.raises(ValueError, match="the 1-form networks return"):
        FlatGAN((2,), (-math.inf, math.inf), latent_dim=4, k=1, oriented_ranges=[1.0],
                one_form=lambda data_shape, form_shape: MLPOneForm(data_shape, (3,)))


# ---- configs through the CLI ----------------------------------------------------------------------------------
FLATGAN_CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs" / "flatgan").glob("*.yaml"))


def config_args(config: str, tmp_path: Path) -> list[str]:
    """A test-sized copy of the config (small evaluation) and this machine's data (uncached tangents)."""
    has_evaluation = "circle5" not in config
    path = prepared_config(config, tmp_path / "prepared") if has_evaluation else REPO / config
    args = ["--config", str(path)]
    if "fashion_mnist" in config:
        args += ["--data.init_args.base.init_args.data_dir", str(SHARED_DATA), "--data.init_args.cache", "false",
                 "--data.init_args.batch_size", "4", "--model.init_args.generator.init_args.width", "4",
                 "--model.init_args.zero_form.init_args.width", "4", "--model.init_args.one_form.init_args.width", "2"]
    if "moving" in config:
        args += ["--data.init_args.batch_size", "4", "--model.init_args.generator.init_args.width", "4",
                 "--model.init_args.zero_form.init_args.width", "4", "--model.init_args.one_form.init_args.width", "2"]
    if "digits" in config:
        args += ["--data.init_args.batch_size", "8"]
    if "circle5" in config:  # 5 points would not give 2 DDP ranks a batch of 5 each
        args += ["--data.init_args.num_samples", "20"]
    return args


def steps_for(config: str) -> int:
    return 12 if "circle5" in config else 4  # circle5 takes 5 critic steps per generator step


@pytest.mark.parametrize("config", FLATGAN_CONFIGS)
def test_every_config_trains_under_bf16_mixed(config, tmp_path, monkeypatch):
    if "fashion_mnist" in config and not SHARED_DATA.exists():
        pytest.skip("shared data not found")
    monkeypatch.chdir(REPO)
    steps = steps_for(config)
    cli = run_cli(["fit", *config_args(config, tmp_path), *quick_args(tmp_path, steps=steps),
                   "--trainer.precision", "bf16-mixed"])
    model = cli.model
    assert cli.trainer.global_step == steps and model.generator_step >= 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert float(cli.trainer.callback_metrics["train/flat_distance"]) == float(
        cli.trainer.callback_metrics["train/flat_distance"])  # logged and not NaN
    x, tangents = model.generate_with_tangents(model.sample_latents(3))
    assert x.dtype == tangents.dtype == torch.float32 and tangents.shape == (3, *model.data_shape, model.k)
    assert torch.isfinite(tangents).all() and tangents.abs().sum() > 0
    loaded = FlatGAN.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    z = model.sample_latents(3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.generate_with_tangents(z), model.generate_with_tangents(z), rtol=0, atol=0)
    images = {p.name.split("_step")[0] for p in (tmp_path / "images").glob("*.png")}
    expected = {"samples_scatter", "traversal_curve"} if model.data_shape == (2,) else {
        "samples_grid", *(f"traversal_z{i + 1}" for i in range(model.k))}
    assert expected <= images, images
    if "moving" not in config:  # the datamodule knows its tangents at any point: the score ran
        assert 0 <= float(cli.trainer.callback_metrics["eval/equivariance"]) <= 1


@pytest.mark.parametrize("config", FLATGAN_CONFIGS)
def test_every_config_trains_under_two_process_ddp(config, tmp_path, monkeypatch):
    if "fashion_mnist" in config and not SHARED_DATA.exists():
        pytest.skip("shared data not found")
    monkeypatch.chdir(REPO)
    parameters = ddp_run_parameters([*config_args(config, tmp_path), *quick_args(tmp_path, steps=steps_for(config)),
                                     "--trainer.accelerator", "cpu"], tmp_path)
    assert any(name.startswith("critic.one_forms.") for name in parameters)  # the forms' nets are in sync too


# ---- the equivariance score -----------------------------------------------------------------------------------
class CircleGenerator(torch.nn.Module):
    """g(z) = (cos s·z_1, sin s·z_1): the unit circle, counter-clockwise for s = 1, clockwise for s = −1."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self.speed = speed

    def forward(self, z):
        return torch.stack([(self.speed * z[:, 0]).cos(), (self.speed * z[:, 0]).sin()], dim=1)


class RadialGenerator(torch.nn.Module):
    """g(z) = (1 + z_1/10)·(cos z_2, sin z_2): z_1 moves points outwards, across the circle's tangent."""

    def forward(self, z):
        return (1 + 0.1 * z[:, :1]) * torch.stack([z[:, 1].cos(), z[:, 1].sin()], dim=1)


def test_equivariance_score_on_exact_circle_generators():
    from genzoo.callbacks.flat import equivariance_score

    circle = Circle5()
    z = torch.rand(64, 3) * TWO_PI - math.pi
    forward = equivariance_score(CircleGenerator(1.0), z, 1, circle.tangents_at)
    backward = equivariance_score(CircleGenerator(-2.0), z, 1, circle.tangents_at)
    assert forward["score"] == pytest.approx(1.0) and forward["per_direction"] == pytest.approx([1.0])
    assert backward["score"] == pytest.approx(1.0) and backward["per_direction"] == pytest.approx([-1.0])
    radial = equivariance_score(RadialGenerator(), z, 1, circle.tangents_at)  # moving outwards, not along
    assert radial["score"] == pytest.approx(0.0, abs=1e-6)


def test_equivariance_callback_skips_models_without_oriented_directions(tmp_path):
    from types import SimpleNamespace

    from genzoo.callbacks.flat import EquivarianceScore

    callback = EquivarianceScore(n_samples=8)
    trainer = SimpleNamespace(datamodule=Circle5())
    with pytest.warns(UserWarning, match="k = 0"):
        callback.setup(trainer, circle_model(k=0), "fit")
    callback.log_now(trainer, circle_model(k=0))
    assert callback.last is None
    with pytest.raises(ValueError, match="needs a datamodule with tangents_at"):
        callback.setup(SimpleNamespace(datamodule=object()), circle_model(k=1), "fit")
