"""Every config in configs/: parses through the `zoo` CLI (over configs/defaults.yaml), builds its model, datamodule
and callbacks, and trains one step on a synthetic batch of its data's shape (no dataset is read); and the settings
from the papers that the configs pin."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from unittest import mock

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from genzoo.aeot import AEOT
from genzoo.callbacks.schedules import FreezeEncoder, OctaveBetaSchedule
from genzoo.cli import CONFIG_DIR, available_configs, run_cli
from genzoo.datamodules.base import TensorDictDataset
from genzoo.nets import LucicInfoGANDecoder
from genzoo.nets.octave import OctaveNormAct

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = available_configs()
AE_METHODS = ("flexae", "flexae_sr", "wae_gan", "wae_mmd")
BATCH = 2  # test-sized: the configs' own batches (up to 512) only cost time here
FAST_SOLVER = {"tolerance": 0.3, "max_steps": 400}


def config_path(name: str) -> str:
    return str(CONFIG_DIR / f"{name}.yaml")


def printed(config: str) -> dict:
    """The config as ``zoo fit --config <config> --print_config`` shows it, and a run saves it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit), mock.patch.object(sys, "argv", sys.argv[:1]):
        run_cli(["fit", "--config", config, "--print_config"])
    return yaml.safe_load(out.getvalue())


def callback_args(config: dict, class_path: str) -> dict:
    return next(c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"] == class_path)


def test_the_config_grid_is_complete():
    images = ("fashion_mnist", "cifar10", "celeba64", "digits")
    assert set(CONFIGS) == (
        {f"{m}/{d}" for m in ("wgan", "wgan_gp") for d in (*images, "grid25")}
        | {f"ocgan/{m}_{c}_{d}" for m in ("dcgan", "lsgan", "wgan") for c in ("octave", "standard")
           for d in ("fashion_mnist", "cifar10", "celeba128")}
        | {f"{m}/{d}" for m in AE_METHODS for d in images}
        | {f"aeot/{d}" for d in (*images, "grid25")}
        | {f"flatgan/{d}" for d in ("circle5", "fashion_mnist", "fashion_mnist_k3", "digits", "moving")}
        | {"hinge_gan/digits"})


def test_a_config_overrides_the_shared_defaults_and_its_printed_form_needs_none(tmp_path, monkeypatch):
    grid = printed(config_path("aeot/grid25"))
    assert (grid["trainer"]["accelerator"], grid["trainer"]["max_epochs"]) == ("cpu", 1)  # the config's own
    assert grid["trainer"]["logger"]["class_path"] == "genzoo.loggers.ZooWandbLogger"  # configs/defaults.yaml's
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(grid))
    monkeypatch.setattr("genzoo.cli.DEFAULT_CONFIG_FILES", [])
    assert printed(str(path)) == grid  # complete: a run's config.yaml re-runs as it was


def synthetic_train_set(data, model, size: int = 8) -> TensorDictDataset:
    """Random samples in the data's shape and value range (and tangents, for FlatGAN)."""
    generator = torch.Generator().manual_seed(0)
    low, high = data.value_range
    tensors = {"x": low + (high - low) * torch.rand(size, *data.data_shape, generator=generator)}
    if getattr(model, "k", 0):
        tensors["tangents"] = torch.randn(size, *data.data_shape, model.k, generator=generator)
    return TensorDictDataset(**tensors)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_builds_and_trains_a_step(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a config writes (runs/, data/) lands here
    monkeypatch.setattr(sys, "argv", sys.argv[:1])  # pytest's arguments are not the CLI's
    cli = run_cli(["--config", config_path(name)], run=False)
    model, data, config = cli.model, cli.datamodule, cli.config.as_dict()
    assert config["trainer"]["default_root_dir"] == f"runs/{name}"
    assert config["trainer"]["logger"]["init_args"]["name"] == name.replace("/", "-")
    assert config["trainer"]["max_steps"] == -1 and config["seed_everything"] == 0  # from configs/defaults.yaml
    own = yaml.safe_load(Path(config_path(name)).read_text())["trainer"]["callbacks"]
    assert [c["class_path"] for c in config["trainer"]["callbacks"]] == [c["class_path"] for c in own]
    assert tuple(model.data_shape) == tuple(data.data_shape) and tuple(model.value_range) == data.value_range
    CHECKS.get(name.split("/")[0], lambda *args: None)(name, model, data, config)

    # one step on a synthetic batch, with the config's schedules (they change what a step trains)
    if not data.arbitrary_value_range:  # images; the toys draw their points in memory
        train_set = synthetic_train_set(data, model)

        def synthetic_setup(stage: str | None = None) -> None:  # in place of reading (or downloading) any files
            data.train_set, data.val_set, data.test_set = train_set, None, None

        monkeypatch.setattr(data, "prepare_data", lambda: None)
        monkeypatch.setattr(data, "setup", synthetic_setup)
    data.batch_size, data.train_subset = min(data.batch_size, BATCH), None
    if isinstance(model, AEOT):  # a coarse OT solve to at most 64 codes (tests/test_ot.py tests the solver)
        model.solver_settings, model.transport_samples = FAST_SOLVER, 64
    schedules = [c for c in cli.trainer.callbacks if isinstance(c, OctaveBetaSchedule | FreezeEncoder)]
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=1, callbacks=schedules,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    samples = model.sample(4)
    assert samples.shape == (4, *data.data_shape) and torch.isfinite(samples).all()
    if len(data.data_shape) == 3:
        low, high = model.value_range
        assert samples.min() >= low and samples.max() <= high
    AFTER_A_STEP.get(name.split("/")[0], lambda *args: None)(name, model)


# ---- what each family's configs pin ---------------------------------------------------------------------------

def check_wgan(name: str, model, data, config: dict) -> None:
    dataset = name.split("/")[1]
    expected = {"grid25": "pixels", "digits": "classifier:digits", "fashion_mnist": "classifier:fashion_mnist"}
    assert callback_args(config, "genzoo.callbacks.Evaluation")["extractor"] == expected.get(dataset, "inception")
    if name.startswith("wgan/") and dataset != "grid25":
        # martinarjovsky/WassersteinGAN models/dcgan.py builds every convolution with bias=False
        for net in (model.generator, model.critic):
            convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
            assert convs and all(m.bias is None for m in convs), f"{name}: {type(net).__name__} has conv biases"


def check_ocgan(name: str, model, data, config: dict) -> None:
    octave = "octave" in name
    expected = "classifier:fashion_mnist_32" if "fashion" in name else "inception"
    assert callback_args(config, "genzoo.callbacks.Evaluation")["extractor"] == expected
    callbacks = config["trainer"]["callbacks"]
    assert any(c["class_path"] == "genzoo.callbacks.OctaveBetaSchedule" for c in callbacks) == octave
    if "celeba" in name:  # the authors train on all 202,599 images
        assert data.split == "all"
    eval_betas = {(round(float(m.eval_beta_high), 6), round(float(m.eval_beta_low), 6))
                  for m in model.generator.modules() if isinstance(m, OctaveNormAct) and m.has_eval_beta}
    assert eval_betas == ({(0.7, 0.3)} if octave else set())  # the authors' test-time β
    if "/wgan_" in name:  # the authors' periodic long critic phases precede steps 499, 999, ...
        assert model.phase_schedule.warmup_every_offset == 1 and model.phase_schedule.critic_steps(499) == 20


def ocgan_after_a_step(name: str, model) -> None:
    betas = {round(float(m.beta_high), 6) for m in model.modules() if isinstance(m, OctaveNormAct)}
    assert betas == ({0.7} if "octave" in name else {1.0})  # the combination schedule after 1 of 1 epochs


def check_autoencoder(name: str, model, data, config: dict) -> None:
    shapes = {"fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "celeba64": (3, 64, 64), "digits": (1, 8, 8)}
    assert tuple(model.data_shape) == shapes[name.split("/")[1]] and model.value_range == (0.0, 1.0)
    assert config["trainer"]["max_epochs"] == -1  # budgets in outer steps (the WAE test below)


def check_aeot(name: str, model, data, config: dict) -> None:
    dataset = name.split("/")[1]
    if dataset != "grid25":
        assert isinstance(model.decoder, LucicInfoGANDecoder)
    assert data.train_subset == {"cifar10": 25000, "celeba64": 10000}.get(dataset)  # the paper's training sets


def aeot_after_a_step(name: str, model) -> None:
    assert model.prior.fitted and model.prior.solve_report["converged"]  # solved when the one epoch ended


def check_flatgan(name: str, model, data, config: dict) -> None:
    ks = {"circle5": 1, "fashion_mnist": 2, "fashion_mnist_k3": 3, "digits": 2, "moving": 1}
    assert model.k == ks[name.split("/")[1]]


def flatgan_after_a_step(name: str, model) -> None:
    _, tangents = model.generate_with_tangents(model.sample_latents(3))
    assert tangents.shape == (3, *model.data_shape, model.k) and torch.isfinite(tangents).all()


CHECKS = {"wgan": check_wgan, "wgan_gp": check_wgan, "ocgan": check_ocgan, "aeot": check_aeot,
          "flatgan": check_flatgan, **{m: check_autoencoder for m in AE_METHODS}}
AFTER_A_STEP = {"ocgan": ocgan_after_a_step, "aeot": aeot_after_a_step, "flatgan": flatgan_after_a_step}


def test_the_wae_baselines_get_flexaes_budget_evaluation_cadence_and_fid_protocol():
    """FlexAE's paper trains every method for the same number of iterations and evaluates them alike. Optimizer
    steps per iteration: FlexAE 1 + 5 + 2, FlexAE-SR 1 + 5 x 2 + 3, WAE-GAN 2, WAE-MMD 1."""
    steps_per_iteration = {"flexae": 8, "flexae_sr": 14, "wae_gan": 2, "wae_mmd": 1}
    for data in ("fashion_mnist", "cifar10", "celeba64", "digits"):
        configs = {m: yaml.safe_load(Path(config_path(f"{m}/{data}")).read_text()) for m in AE_METHODS}
        budgets = {m: c["model"]["init_args"]["max_outer_steps"] for m, c in configs.items()}
        assert len(set(budgets.values())) == 1, f"{data}: {budgets}"
        evaluations = {m: callback_args(c, "genzoo.callbacks.Evaluation") for m, c in configs.items()}
        cadence = {m: e["every_n_steps"] / steps_per_iteration[m] for m, e in evaluations.items()}
        assert len(set(cadence.values())) == 1, f"{data}: evaluation every {cadence} iterations"
        assert {e["sample_normalization"] for e in evaluations.values()} == {"minmax"}
        assert configs["wae_gan"]["model"]["init_args"]["adversary"]["init_args"]["init"] == "normal_0.01"
