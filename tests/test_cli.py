"""`zoo fit` end to end: mixed precision, 2-process DDP, W&B offline, resume, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from genzoo.cli import run_cli as main
from genzoo.datamodules import DataNotFoundError
from tests.helpers import prepared_config
from tests.test_datamodules import write_fake_celeba

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def quick_args(tmp_path, steps: int = 12, logger: bool = False) -> list[str]:
    """Short CPU runs; ``logger=True`` keeps the config's logger."""
    no_logger = [] if logger else ["--trainer.logger", "false"]
    return [*no_logger, "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(tmp_path)]


def small_config(config: str, tmp_path: Path) -> str:
    """The config with a test-sized Evaluation."""
    return str(prepared_config(config, tmp_path / "prepared"))


def data_args(config: str, tmp_path, monkeypatch) -> list[str]:
    """Point each config at the data this machine has (users keep the configs' defaults)."""
    if "fashion_mnist" in config:
        return ["--data.init_args.data_dir", str(SHARED_DATA), "--data.init_args.batch_size", "8"]
    if "cifar10" in config:  # the CIFAR-10 test split as JPEGs stands in for the torchvision files
        return ["--data", "genzoo.datamodules.ImageFolderDataModule", "--data.init_args.root",
                str(SHARED_DATA / "cifar10-jpeg-test"), "--data.init_args.image_size", "32",
                "--data.init_args.batch_size", "8"]
    if "celeba" in config:
        write_fake_celeba(tmp_path / "celeba_root", partition=[0] * 20 + [1, 1] + [2] * 20)  # 20 test images
        monkeypatch.setattr(torchvision.datasets.CelebA, "_check_integrity", lambda self: True)
        return ["--data.init_args.data_dir", str(tmp_path / "celeba_root"), "--data.init_args.batch_size", "2"]
    if "grid25" in config:
        return ["--data.init_args.num_samples", "5000"]
    return []


@pytest.mark.parametrize("method", ["wgan", "wgan_gp"])
def test_bf16_mixed_through_the_cli(method, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    no_warmup = ["--model.init_args.warmup", "false"] if method == "wgan" else []
    cli = main(["fit", "--config", small_config(f"configs/{method}/digits.yaml", tmp_path), *quick_args(tmp_path),
                "--trainer.precision", "bf16-mixed", *no_warmup])
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.generator_step == 2
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def test_rerun_in_the_same_directory_and_resume_from_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = ["fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path)]
    main([*config, *quick_args(tmp_path, steps=12)])  # writes config.yaml and checkpoints/last.ckpt
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.exists()
    cli = main([*config, *quick_args(tmp_path, steps=24), "--ckpt_path", str(last)])
    assert cli.trainer.global_step == 24 and cli.model.generator_step == 4


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncate"])
def test_corrupt_or_foreign_checkpoints_give_a_clear_error(tmp_path, monkeypatch, content):
    monkeypatch.chdir(REPO)
    path = tmp_path / "bad.ckpt"
    if content == "truncate":
        main(["fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path),
              *quick_args(tmp_path / "run", steps=6)])
        good = (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.ckpt.*(not a readable|truncated|corrupt)"):
        main(["fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path), *quick_args(tmp_path),
              "--ckpt_path", str(path)])


def test_a_checkpoint_of_another_library_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 0}, path)
    with pytest.raises(ValueError, match="not written by a genzoo model"):
        main(["fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path), *quick_args(tmp_path),
              "--ckpt_path", str(path)])


def test_missing_data_names_the_files(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(DataNotFoundError, match="img_align_celeba"):
        main(["fit", "--config", "configs/wgan_gp/celeba64.yaml", *quick_args(tmp_path),
              "--data.init_args.data_dir", str(tmp_path / "nothing"), "--data.init_args.download", "false"])


def test_wrong_image_size_for_a_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="4·2\\^k or 7·2\\^k"):
        main(["fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path), *quick_args(tmp_path),
              "--data.init_args.image_size", "12"])


def test_wandb_logs_offline_without_credentials(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cli = main(["fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path),
                *quick_args(tmp_path, logger=True),
                "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.log_every_n_steps", "2"])
    import wandb

    run_dir = Path(cli.trainer.logger.experiment.dir).parent
    wandb.finish()
    assert cli.trainer.logger._offline
    assert run_dir.name.startswith("offline-run-")
    assert list(run_dir.glob("*.wandb")), "no offline history file"


@pytest.mark.parametrize("method", ["wgan_gp", "wgan"])
def test_ddp_two_processes_keep_identical_parameters(tmp_path, method):
    """Real `zoo fit --trainer.strategy ddp` with 2 CPU processes (gloo); each rank dumps its parameters."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "genzoo.cli", "fit", "--config",
               small_config(f"configs/{method}/digits.yaml", tmp_path),
               *quick_args(tmp_path, steps=18), "--trainer.devices", "2", "--trainer.strategy", "ddp",
               *(["--model.init_args.warmup", "false"] if method == "wgan" else []),  # so the generator steps too
               "--trainer.callbacks+=tests.helpers.DumpParameters",
               f"--trainer.callbacks.directory={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "params_rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "params_rank1.pt", weights_only=True)
    initial = main(["fit", "--config", small_config(f"configs/{method}/digits.yaml", tmp_path),
                    *quick_args(tmp_path / "init", steps=1),
                    "--trainer.limit_train_batches", "0"]).model
    initial = dict(initial.named_parameters())
    changed = set()
    for name, value in rank0.items():
        torch.testing.assert_close(value, rank1[name], rtol=0, atol=0, msg=f"{name} differs across ranks")
        if not torch.equal(value, initial[name]):
            changed.add(name.split(".")[0])
    assert changed == {"generator", "critic"}, f"DDP training updated only {changed}"


def test_the_zoo_console_script_exits_cleanly(tmp_path):
    import shutil

    if shutil.which("zoo") is None:
        pytest.skip("the zoo console script is not installed (pip install -e .)")
    result = subprocess.run(["zoo", "fit", "--config", small_config("configs/wgan_gp/digits.yaml", tmp_path),
                             *quick_args(tmp_path, steps=6)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
