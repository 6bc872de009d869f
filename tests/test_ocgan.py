"""OC-GAN pieces: the β schedules and the evaluation β, the octave generator/discriminator at 32/64/128 px, and
the DCGAN/LSGAN objectives."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from genzoo.callbacks.schedules import OctaveBetaSchedule, octave_beta
from genzoo.cli import run_cli as cli_main
from genzoo.gan import DCGAN, LSGAN
from genzoo.nets import OCGANCritic, OCGANGenerator
from genzoo.nets.octave import OctaveNormAct, set_octave_beta
from genzoo.ops.losses import least_squares_critic_loss, nonsaturating_critic_loss, nonsaturating_generator_loss
from tests.helpers import ddp_run_parameters, prepared_config, quiet_trainer
from tests.test_cli import REPO, data_args, quick_args


def test_combination_schedule_is_the_authors_curve():
    # dcgan.py with 50 epochs: β_H = 0.2 + 0.02·k for epochs k = 1..25 (1-based), then 0.7
    assert octave_beta("combination", 0, 50) == pytest.approx((0.22, 0.78))
    assert octave_beta("combination", 24, 50) == pytest.approx((0.70, 0.30))
    assert octave_beta("combination", 49, 50) == pytest.approx((0.70, 0.30))
    assert octave_beta("ramp", 0, 4) == pytest.approx((0.25, 0.75))
    assert octave_beta("ramp", 3, 4) == pytest.approx((1.0, 0.0))
    assert octave_beta("constant", 7, 10, 0.6, 0.4) == (0.6, 0.4)
    with pytest.raises(ValueError, match="schedule must be one of"):
        octave_beta("cosine", 0, 10)


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_octave_nets_at_every_size_and_standard_twins_with_equal_parameters(size, upsample):
    octave = OCGANGenerator(100, (3, size, size), width=8, alpha=0.5, upsample=upsample)
    standard = OCGANGenerator(100, (3, size, size), width=8, conv="standard", upsample=upsample)
    z = torch.randn(2, 100)
    assert octave(z).shape == standard(z).shape == (2, 3, size, size)
    assert sum(p.numel() for p in octave.parameters()) == sum(p.numel() for p in standard.parameters())
    critic = OCGANCritic((3, size, size), width=8, alpha=0.5)
    assert critic(torch.randn(2, 3, size, size)).shape == (2,)


def test_octave_nets_reject_other_sizes():
    with pytest.raises(ValueError, match="image_size 32"):
        OCGANGenerator(100, (1, 28, 28))
    with pytest.raises(ValueError, match="upsample must be"):
        OCGANGenerator(100, (1, 32, 32), upsample="bilinear")
    with pytest.raises(ValueError, match="conv must be 'standard' or 'octave'"):
        OCGANCritic((1, 32, 32), conv="wavelet")
    with pytest.raises(ValueError, match="needs alpha > 0"):
        OCGANCritic((1, 32, 32), conv="octave", alpha=0.0)


def test_gan_objectives():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    softplus = torch.nn.functional.softplus
    expected = softplus(-real).mean() + softplus(fake).mean()  # −log σ(r) − log(1 − σ(f))
    torch.testing.assert_close(nonsaturating_critic_loss(real, fake), expected)
    torch.testing.assert_close(nonsaturating_generator_loss(fake), softplus(-fake).mean())
    torch.testing.assert_close(least_squares_critic_loss(real, fake), ((real - 1) ** 2).mean() + (fake ** 2).mean())


class Blobs(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = (torch.rand(64, 1, 32, 32, generator=g) * 0.2 + 0.5).clamp(-1, 1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


@pytest.mark.parametrize("cls", [DCGAN, LSGAN])
def test_octave_gan_trains_with_the_beta_schedule(cls, tmp_path):
    torch.manual_seed(0)
    model = cls(data_shape=(1, 32, 32), latent_dim=16, generator=functools.partial(OCGANGenerator, width=8),
                critic=functools.partial(OCGANCritic, width=8))
    loader = torch.utils.data.DataLoader(Blobs(), batch_size=16, drop_last=True)
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[OctaveBetaSchedule("ramp")])
    trainer.fit(model, loader)
    assert trainer.global_step == 16
    blocks = [m for m in model.modules() if isinstance(m, OctaveNormAct)]
    assert blocks and all(float(b.beta_high) == 1.0 and float(b.beta_low) == 0.0 for b in blocks)  # ramp's end
    assert float(trainer.callback_metrics["train/beta_high"]) == 1.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def octave_blocks(net: torch.nn.Module) -> list[OctaveNormAct]:
    return [m for m in net.modules() if isinstance(m, OctaveNormAct)]


def with_fixed_beta(generator: torch.nn.Module, beta_high: float, beta_low: float) -> torch.nn.Module:
    """A copy of ``generator`` that uses (beta_high, beta_low) in both modes: no evaluation β."""
    twin = copy.deepcopy(generator)
    for block in octave_blocks(twin):
        block.has_eval_beta = False
    set_octave_beta(twin, beta_high, beta_low)
    return twin


def test_the_generator_samples_with_the_eval_beta_in_eval_mode_and_trains_with_the_schedules():
    torch.manual_seed(0)
    generator = OCGANGenerator(16, (1, 32, 32), width=8, eval_beta=(0.7, 0.3))
    set_octave_beta(generator, 0.22, 0.78)  # what the combination schedule sets after epoch 1 of 50
    assert all((float(b.beta_high), float(b.beta_low)) == pytest.approx((0.22, 0.78)) and
               (float(b.eval_beta_high), float(b.eval_beta_low)) == pytest.approx((0.7, 0.3))
               for b in octave_blocks(generator))
    z = torch.randn(8, 16)
    generator.eval()
    with torch.no_grad():
        evaluated = generator(z)
        torch.testing.assert_close(evaluated, with_fixed_beta(generator, 0.7, 0.3).eval()(z))
        assert not torch.allclose(evaluated, with_fixed_beta(generator, 0.22, 0.78).eval()(z), atol=1e-4)
    generator.train()
    twin = with_fixed_beta(generator, 0.22, 0.78).train()  # same weights and running statistics
    trained = generator(z)
    torch.testing.assert_close(trained, twin(z))
    trained.mean().backward()  # training passes keep their graph through the schedule's β
    assert all(p.grad is not None for p in generator.parameters())
    # without eval_beta, eval mode keeps the training β (the earlier behaviour)
    plain = OCGANGenerator(16, (1, 32, 32), width=8)
    assert not any(b.has_eval_beta for b in octave_blocks(plain))
    assert not any("eval_beta" in k for k in plain.state_dict())


def test_the_eval_beta_survives_a_checkpoint_and_drives_generate(tmp_path):
    torch.manual_seed(0)
    make = functools.partial(DCGAN, data_shape=(1, 32, 32), latent_dim=16,
                             generator=functools.partial(OCGANGenerator, width=8, eval_beta=(0.7, 0.3)),
                             critic=functools.partial(OCGANCritic, width=8))
    model = make()
    loader = torch.utils.data.DataLoader(Blobs(), batch_size=16, drop_last=True)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1,
                            callbacks=[OctaveBetaSchedule("combination", epochs=50)])
    trainer.fit(model, loader)
    assert {round(float(b.beta_high), 6) for b in octave_blocks(model)} == {0.22}  # training β, G and D
    z = torch.randn(6, 16)
    samples = model.generate(z)  # what the Evaluation and SampleGrid callbacks call
    torch.testing.assert_close(samples, with_fixed_beta(model.generator, 0.7, 0.3).eval()(z))
    assert model.generator.training  # generate restored train mode

    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = make()
    assert not torch.allclose(loaded.generate(z), samples, atol=1e-4)
    loaded.load_state_dict(torch.load(path, weights_only=False)["state_dict"])  # hparams hold partials
    torch.testing.assert_close(loaded.generate(z), samples)
    assert all((float(b.beta_high), float(b.eval_beta_high)) == pytest.approx((0.22, 0.7))
               for b in octave_blocks(loaded.generator))
    # zoo evaluate --octave_beta training: the same checkpoint read at the β it was trained at
    for block in octave_blocks(loaded.generator):
        block.sample_with_training_beta()
    torch.testing.assert_close(loaded.generate(z), with_fixed_beta(model.generator, 0.22, 0.78).eval()(z))


@pytest.mark.parametrize("eval_beta, message", [
    ((0.7,), "two numbers"), ((0.7, 0.3, 0.0), "two numbers"), ("0.7", "two numbers"), (0.7, "two numbers"),
    (("high", 0.3), "two numbers"), ((0.7, -0.3), ">= 0"), ((float("nan"), 0.3), "finite"),
])
def test_bad_eval_betas_are_clear_errors(eval_beta, message):
    with pytest.raises(ValueError, match=f"eval_beta must be .*{message}"):
        OCGANGenerator(16, (1, 32, 32), width=8, eval_beta=eval_beta)


def test_bad_constant_betas_are_clear_errors():
    with pytest.raises(ValueError, match="beta_high, beta_low.*>= 0"):
        OctaveBetaSchedule("constant", beta_high=-1.0)


@pytest.mark.parametrize("model", ["dcgan", "lsgan", "wgan"])
def test_octave_models_under_bf16_and_two_process_ddp(model, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = str(prepared_config(f"configs/ocgan/{model}_octave_fashion_mnist.yaml", tmp_path / "prepared"))
    data = data_args("fashion_mnist", tmp_path, monkeypatch)
    no_warmup = ["--model.init_args.warmup", "false"] if model == "wgan" else []
    cli = cli_main(["fit", "--config", config, *quick_args(tmp_path / "bf16", steps=6), *data, *no_warmup,
                    "--trainer.precision", "bf16-mixed"])
    assert cli.trainer.precision == "bf16-mixed" and cli.model.generator_step >= 1
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    ddp_run_parameters(["--config", config, *quick_args(tmp_path / "ddp", steps=6), *data, *no_warmup], tmp_path)
