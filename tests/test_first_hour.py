"""A user's first hour through the CLI on digits, with tiny budgets: fit, the files where the README says, a rerun
that does not overwrite, test, validate, predict and resume; and checkpoints of models built in Python."""

from __future__ import annotations

import functools
import json

import lightning as L
import pytest
import torch
from PIL import Image

from genzoo.checkpoints import load_plain, read_checkpoint
from genzoo.cli import run_cli
from genzoo.datamodules import Digits
from genzoo.nets import DCGANCritic, DCGANGenerator
from genzoo.wgan import WGANGP
from tests.helpers import prepared_config

from .test_reliability import REPO

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu", "--trainer.devices", "1"]


def test_the_first_hour_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = str(prepared_config("configs/wgan_gp/digits.yaml", tmp_path / "prepared"))
    root = tmp_path / "runs" / "wgan_gp" / "digits"
    fit = ["fit", "--config", config, *QUIET, "--trainer.default_root_dir", str(root),
           "--model.init_args.max_generator_steps", "4"]
    run_cli(fit)
    # one directory with everything, whatever the logger (W&B here, offline)
    assert (root / "config.yaml").is_file() and (root / "wandb").is_dir()
    assert read_checkpoint(root / "checkpoints" / "last.ckpt")["zoo"]["schedule"]["step"] == 4
    assert list((root / "images").glob("samples_grid_step*.png"))
    assert json.loads((root / "evaluation.jsonl").read_text().splitlines()[-1])["step"] == 24
    # a rerun does not overwrite it
    before = (root / "checkpoints" / "last.ckpt").read_bytes()
    run_cli(fit)
    assert (root.with_name("digits-1") / "checkpoints" / "last.ckpt").is_file()
    assert (root / "checkpoints" / "last.ckpt").read_bytes() == before

    last = str(root / "checkpoints" / "last.ckpt")
    tested = run_cli(["test", "--config", config, *QUIET, "--trainer.logger", "false", "--ckpt_path", last])
    metrics = tested.trainer.callback_metrics
    assert float(metrics["test/fid"]) > 0 and "test/critic_gap" in metrics and "test/precision" in metrics
    record = json.loads((root / "evaluation.jsonl").read_text().splitlines()[-1])
    assert record["split"] == "test" and record["fid"] == pytest.approx(float(metrics["test/fid"]), rel=1e-5)

    validated = run_cli(["validate", "--config", config, *QUIET, "--trainer.logger", "false", "--ckpt_path", last])
    gap = validated.trainer.callback_metrics["val/critic_gap"]
    assert torch.isfinite(gap) and gap == pytest.approx(float(validated.trainer.callback_metrics["val/critic_real"]
                                                              - validated.trainer.callback_metrics["val/critic_fake"]))

    run_cli(["predict", "--config", config, *QUIET, "--trainer.logger", "false", "--ckpt_path", last,
             "--num_samples", "10"])
    samples = load_plain(root / "predictions" / "samples.pt")
    assert samples.shape == (10, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    assert Image.open(root / "predictions" / "000009.png").size == (8, 8)
    with pytest.raises(ValueError, match="give --ckpt_path"):
        run_cli(["predict", "--config", config, *QUIET, "--trainer.logger", "false"])

    # resume with a larger budget: continues in the same directory
    resumed = run_cli([*fit[:-1], "6", "--ckpt_path", last])
    assert resumed.model.generator_step == 6
    assert read_checkpoint(root / "checkpoints" / "last.ckpt")["zoo"]["schedule"]["step"] == 6
    assert not root.with_name("digits-2").exists()


def test_validate_reports_the_reconstruction_error_of_an_autoencoder(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = str(prepared_config("configs/wae_mmd/digits.yaml", tmp_path / "prepared"))
    common = ["--config", config, *QUIET, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    cli = run_cli(["fit", *common, "--model.init_args.max_outer_steps", "3"])
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    validated = run_cli(["validate", *common, "--ckpt_path", last])
    error = float(validated.trainer.callback_metrics["val/reconstruction"])
    x = torch.stack([cli.datamodule.val_set[i]["x"] for i in range(len(cli.datamodule.val_set))])
    expected = float(cli.model.reconstruction_loss(x, cli.model.reconstruct(x)))
    assert error == pytest.approx(expected, rel=1e-4)


def test_a_model_built_in_python_saves_a_checkpoint_that_loads_with_weights_only(tmp_path):
    def build(steps: int, width: int = 8) -> WGANGP:
        return WGANGP(data_shape=(1, 8, 8), latent_dim=16, generator=functools.partial(DCGANGenerator, width=width),
                      critic=functools.partial(DCGANCritic, width=8), max_generator_steps=steps,
                      generator_optimizer=functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.9)))

    def trainer() -> L.Trainer:
        return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, default_root_dir=str(tmp_path))

    model, data, first = build(2), Digits(batch_size=32, image_size=8), trainer()
    first.fit(model, data)
    path = tmp_path / "python.ckpt"
    first.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["hyper_parameters"]  # no pickled partials
    assert saved["generator"] == {"class_path": "genzoo.nets.dcgan.DCGANGenerator", "init_args": {"width": 8}}
    loaded = WGANGP.load_from_checkpoint(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.configure_optimizers()[1].param_groups[0]["lr"] == 2e-4
    resumed = build(3)
    trainer().fit(resumed, data, ckpt_path=path)  # the same settings from Python resume
    assert resumed.generator_step == 3
    with pytest.raises(ValueError, match="generator.init_args.width: 8 in the checkpoint, 16 now"):
        trainer().fit(build(3, width=16), data, ckpt_path=path)


def test_configs_by_short_name_a_run_level_bar_and_a_summary(tmp_path, monkeypatch, caplog):
    from genzoo.callbacks.progress import RunProgressBar
    from genzoo.cli import available_configs, resolve_config_names

    assert "wgan_gp/digits" in available_configs() and len(available_configs()) == len(list(
        (REPO / "configs").glob("*/*.yaml")))
    monkeypatch.chdir(tmp_path)  # no configs/ here: the short name finds the repository's
    expected = str(REPO / "configs" / "wgan_gp" / "digits.yaml")
    assert resolve_config_names(["fit", "--config", "wgan_gp/digits"]) == ["fit", "--config", expected]
    assert resolve_config_names(["fit", "--config=wgan_gp/digits.yaml"]) == ["fit", f"--config={expected}"]
    with caplog.at_level("INFO"):
        cli = run_cli(resolve_config_names(["fit", "--config", "wgan_gp/digits", "--trainer.logger", "false",
                                            "--trainer.default_root_dir", str(tmp_path / "run"),
                                            "--model.init_args.max_generator_steps", "3"]))
    bar = cli.trainer.progress_bar_callback
    assert isinstance(bar, RunProgressBar) and bar.train_progress_bar.total == 3 and bar.train_progress_bar.n == 3
    assert "genzoo: WGANGP stopped at generator step 3 (global step 18)" in caplog.text
    assert f"checkpoint     {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert "evaluation     step 18: fid" in caplog.text
