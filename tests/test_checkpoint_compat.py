"""Checkpoints written before the shared training contract (issue 17) still load and resume exactly.

``tests/data/checkpoints_v0`` holds one small checkpoint per family, written by commit eb69991 (the last layout with
per-family schedule states: ``generator_step``/``critic_steps_in_cycle``, ``outer_step``/``cycle_position``/
``encoder_frozen``), several stopped mid-cycle; ``continuation.json`` holds what that code reached when it resumed
each for a few more steps (the global step and every floating tensor's absolute sum)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from genzoo.aeot import AEOT
from genzoo.datamodules import Circle5
from genzoo.flatgan import FlatGAN
from genzoo.flexae import FlexAESR
from genzoo.gan import DCGAN, LSGAN
from genzoo.nets import MLPCritic, MLPEncoder, MLPGenerator, MLPOneForm
from genzoo.wae import WAE
from genzoo.wgan import WGAN, WGANGP
from tests.helpers import PointsDataModule

OLD = Path(__file__).parent / "data" / "checkpoints_v0"
EXPECTED = json.loads((OLD / "continuation.json").read_text())
G = functools.partial(MLPGenerator, width=8, depth=2)
C = functools.partial(MLPCritic, width=8, depth=2)
E = functools.partial(MLPEncoder, width=8, depth=2)
ADVERSARIAL = dict(latent_dim=2, generator=G, critic=C)


def build(name: str):
    """The models exactly as the old code built them for those checkpoints."""
    return {
        "wgan": lambda: WGAN((2,), (-2.0, 2.0), warmup_critic_steps=3, warmup_generator_steps=1, **ADVERSARIAL),
        "wgan_gp": lambda: WGANGP((2,), (-2.0, 2.0), n_critic=2, ema_decay=0.9, **ADVERSARIAL),
        "dcgan": lambda: DCGAN((2,), (-2.0, 2.0), **ADVERSARIAL),
        "lsgan": lambda: LSGAN((2,), (-2.0, 2.0), **ADVERSARIAL),
        "flexae_sr": lambda: FlexAESR((2,), (-2.0, 2.0), latent_dim=2, n_critic=2, encoder=E, decoder=G,
                                      prior_network=G, latent_critic=C, image_critic=C),
        "wae_gan": lambda: WAE((2,), (-2.0, 2.0), latent_dim=2, regularizer="gan", encoder=E, decoder=G, adversary=C),
        "aeot": lambda: AEOT((2,), (-2.0, 2.0), latent_dim=2, encoder=E, decoder=G, solver={"max_steps": 200}),
        "flatgan": lambda: FlatGAN((2,), (-3.0, 3.0), latent_dim=2, k=1, oriented_ranges=(6.0,), nuisance="uniform",
                                   generator=G, zero_form=C, one_form=MLPOneForm),
    }[name]()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_checkpoint_loads_and_resumes_exactly_as_the_old_code_did(name, tmp_path):
    path = OLD / f"{name}.ckpt"
    loaded = type(build(name)).load_from_checkpoint(path, weights_only=True)
    saved = torch.load(path, weights_only=True)
    old_schedule = saved["zoo"]["schedule"]
    step = old_schedule.get("generator_step", old_schedule.get("outer_step"))
    position = old_schedule.get("critic_steps_in_cycle", old_schedule.get("cycle_position", 0))
    assert (loaded.progress_step, loaded.cycle_position) == (step, position)
    assert loaded.sample(3).shape == (3, 2)

    model = build(name)
    torch.manual_seed(0)
    data = Circle5(batch_size=16, num_samples=64) if name == "flatgan" else PointsDataModule(num_samples=64)
    epochs = saved["epoch"] + 2 if name == "aeot" else None
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, max_steps=-1 if name == "aeot" else saved["global_step"] + 6,
                        max_epochs=epochs, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=data, ckpt_path=str(path))
    expected = EXPECTED[name]
    assert trainer.global_step == expected["global_step"]
    sums = {k: float(v.double().abs().sum()) for k, v in model.state_dict().items() if v.is_floating_point()}
    assert sums.keys() == expected["parameters"].keys()
    for key, value in expected["parameters"].items():
        assert sums[key] == pytest.approx(value, abs=2e-6), key


def test_a_model_from_load_from_checkpoint_resumes_from_that_checkpoint(tmp_path):
    """The rebuilt model's factories have no plain form (jsonargparse wraps them); they must not read as changes."""
    path = OLD / "wgan_gp.ckpt"
    model = type(build("wgan_gp")).load_from_checkpoint(path, weights_only=True)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, max_steps=EXPECTED["wgan_gp"]["global_step"],
                        default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=PointsDataModule(num_samples=64), ckpt_path=str(path))
    assert trainer.global_step == EXPECTED["wgan_gp"]["global_step"] and model.generator_step > 2
