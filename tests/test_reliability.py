"""Checkpoints a user can trust, through `zoo fit`: SIGKILL and resume, a resume that honours the command line,
atomic writes, errors that name the file, and the divergence guard."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import genzoo.checkpoints
from genzoo.base import DivergenceError
from genzoo.checkpoints import atomic_save, load_plain, read_checkpoint
from genzoo.cli import run_cli
from genzoo.datamodules import ImageFolderDataModule, UnreadableImageError
from genzoo.ops.ot import SemiDiscreteOT, top_cells

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
         "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]


def checkpoints(every: int) -> list[str]:
    """Only step checkpoints (the configs' evaluation callbacks are tested elsewhere)."""
    return ["--trainer.callbacks", "[{class_path: genzoo.callbacks.StepCheckpoint, init_args: "
            f"{{every_n_train_steps: {every}, save_last: true, save_top_k: -1}}}}]"]


def wgan_gp(root: Path, steps: int, *extra: str) -> list[str]:
    return ["fit", "--config", "configs/wgan_gp/digits.yaml", *QUIET, "--trainer.default_root_dir", str(root),
            "--model.init_args.max_generator_steps", str(steps), *checkpoints(7), *extra]


def flexae_sr(root: Path, steps: int, *extra: str) -> list[str]:
    return ["fit", "--config", "configs/flexae_sr/digits.yaml", *QUIET, "--trainer.default_root_dir", str(root),
            "--model.init_args.max_outer_steps", str(steps), *checkpoints(5), *extra]


def aeot(root: Path, *extra: str) -> list[str]:
    # 2 epochs of 11 batches, then 250 steps of OT to 300 codes (a tolerance it does not reach; the solver's state
    # is saved every 100 steps)
    return ["fit", "--config", "configs/aeot/digits.yaml", *QUIET, "--trainer.default_root_dir", str(root),
            "--trainer.max_epochs", "2", "--model.init_args.transport_samples", "300",
            "--model.init_args.solver", "{tolerance: 0.001, max_steps: 250}", *checkpoints(5), *extra]


def zoo_process(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genzoo.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def run_to_end(args: list[str]) -> None:
    process = zoo_process(args)
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()  # no stray run after a timeout
    assert process.returncode == 0, stderr[-3000:]


def kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds (it must still be running then)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, f"the run ended before the kill point: {process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def final_state(root: Path) -> dict[str, torch.Tensor]:
    checkpoint = read_checkpoint(root / "checkpoints" / "last.ckpt")
    state = dict(checkpoint["state_dict"])
    for i, optimizer in enumerate(checkpoint["optimizer_states"]):
        for key, value in optimizer["state"].items():
            state.update({f"optimizer{i}.{key}.{name}": v for name, v in value.items() if torch.is_tensor(v)})
    return state


def assert_same_state(resumed: Path, uninterrupted: Path) -> None:
    a, b = final_state(resumed), final_state(uninterrupted)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"{name} differs after the resume")


def step_checkpoints(root: Path) -> list[Path]:
    return sorted((root / "checkpoints").glob("*step=*.ckpt"))


# ---- SIGKILL and resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["wgan_gp", "flexae_sr"])
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(model, tmp_path):
    build, steps, kill_after = {"wgan_gp": (wgan_gp, 12, 2), "flexae_sr": (flexae_sr, 3, 2)}[model]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_to_end(build(whole, steps))
    # killed once two step checkpoints exist, at some point in a critic cycle (each 7 or 5 optimizer steps)
    process = zoo_process(build(killed, steps))
    kill_when(process, lambda: len(step_checkpoints(killed)) >= kill_after)
    assert read_checkpoint(killed / "checkpoints" / "last.ckpt")["global_step"] < read_checkpoint(
        whole / "checkpoints" / "last.ckpt")["global_step"]
    assert not list((killed / "checkpoints").glob(".*.tmp"))[1:], "more than the one write in flight was left"
    run_to_end([*build(killed, steps), "--ckpt_path", str(killed / "checkpoints" / "last.ckpt")])
    assert_same_state(killed, whole)


def test_aeot_killed_during_its_final_ot_solve_resumes_the_solve(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_to_end(aeot(whole))
    process = zoo_process(aeot(killed))
    kill_when(process, lambda: (killed / "transport_solver.pt").is_file())  # 100 solver steps done
    saved_solve = load_plain(killed / "transport_solver.pt")
    assert saved_solve["step"] >= 100
    run_to_end([*aeot(killed), "--ckpt_path", str(killed / "checkpoints" / "last.ckpt")])
    assert_same_state(killed, whole)
    assert len(read_checkpoint(whole / "checkpoints" / "last.ckpt")["state_dict"]["prior.potential"]) == 300
    assert not (killed / "transport_solver.pt").exists()  # removed once the map is in the checkpoint


# ---- a resume that honours the command line --------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_wgan_gp(tmp_path_factory) -> Path:
    """A finished 6-generator-step WGAN-GP run (its last.ckpt; copy before resuming into it)."""
    root = tmp_path_factory.mktemp("finished")
    cwd = Path.cwd()
    os.chdir(REPO)
    try:
        run_cli(wgan_gp(root, 6))
    finally:
        os.chdir(cwd)
    return root / "checkpoints" / "last.ckpt"


def resume(tmp_path, checkpoint: Path, steps: int, *extra: str, config: str = "configs/wgan_gp/digits.yaml"):
    args = wgan_gp(tmp_path, steps, "--ckpt_path", str(checkpoint), *extra)
    args[2] = config
    return run_cli(args)


def test_a_finished_run_resumed_with_a_larger_budget_trains_exactly_to_it(finished_wgan_gp, tmp_path, monkeypatch,
                                                                         caplog):
    monkeypatch.chdir(REPO)
    with caplog.at_level(logging.INFO):
        cli = resume(tmp_path, finished_wgan_gp, 9)
    assert cli.model.generator_step == 9 and cli.trainer.global_step == 9 * 6
    assert "max_generator_steps: 6 in the checkpoint, 9 now; the run uses the new value" in caplog.text
    # the same as an uninterrupted 9-step run
    run_cli(wgan_gp(tmp_path / "nine", 9))
    assert_same_state(tmp_path, tmp_path / "nine")


def test_a_finished_run_resumed_with_the_same_budget_does_nothing_and_says_so(finished_wgan_gp, tmp_path,
                                                                             monkeypatch, caplog):
    monkeypatch.chdir(REPO)
    before = finished_wgan_gp.read_bytes()
    with caplog.at_level(logging.INFO):
        cli = resume(tmp_path, finished_wgan_gp, 6)
    assert cli.model.generator_step == 6 and cli.trainer.global_step == 36  # not one step past its end
    assert "already finished (generator step 6, max_generator_steps=6); nothing to train" in caplog.text
    assert finished_wgan_gp.read_bytes() == before
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))  # nothing new written


def test_a_finished_aeot_run_resumed_as_it_was_does_not_solve_again(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(REPO)
    args = aeot(tmp_path, "--model.init_args.solver", "{tolerance: 0.05}")
    run_cli(args)
    solved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]["prior.potential"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        cli = run_cli([*args, "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt")])
    assert "solving semi-discrete OT" not in caplog.text
    torch.testing.assert_close(cli.model.prior.potential, solved, rtol=0, atol=0)


def test_a_checkpoint_of_another_model_class_is_an_error_naming_both(finished_wgan_gp, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError,
                       match="holds a genzoo.wgan.WGANGP model, but this run builds a genzoo.flexae.FlexAESR"):
        run_cli(flexae_sr(tmp_path, 2, "--ckpt_path", str(finished_wgan_gp)))
    run_cli(flexae_sr(tmp_path / "sr", 1))
    with pytest.raises(ValueError,
                       match="holds a genzoo.flexae.FlexAESR model, but this run builds a genzoo.wgan.WGANGP"):
        resume(tmp_path / "back", tmp_path / "sr" / "checkpoints" / "last.ckpt", 6)


@pytest.mark.parametrize(("change", "listed"), [
    (["--model.init_args.generator.init_args.width", "16"], "generator.init_args.width: 32 in the checkpoint, 16 now"),
    (["--model.init_args.gp_weight", "1.0"], "gp_weight: 10.0 in the checkpoint, 1.0 now"),
    (["--data.init_args.value_range", "[0.0, 1.0]"], "value_range: [-1.0, 1.0] in the checkpoint, [0.0, 1.0] now"),
])
def test_settings_that_change_the_model_are_listed_in_an_error(finished_wgan_gp, tmp_path, monkeypatch, change,
                                                               listed):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="trained with other settings") as error:
        resume(tmp_path, finished_wgan_gp, 9, *change)
    assert listed in str(error.value) and "--allow_changed" in str(error.value)


def test_allow_changed_fine_tunes_with_a_new_learning_rate(finished_wgan_gp, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    lower = ["--model.init_args.generator_optimizer.init_args.lr", "1e-5"]
    with pytest.raises(ValueError, match="generator_optimizer.init_args.lr: 0.0001 in the checkpoint, 1e-05 now"):
        resume(tmp_path, finished_wgan_gp, 9, *lower)
    with pytest.raises(ValueError, match="not init arguments of WGANGP"):
        resume(tmp_path, finished_wgan_gp, 9, *lower, "--allow_changed", "generator_lr")
    cli = resume(tmp_path, finished_wgan_gp, 9, *lower, "--allow_changed", "generator_optimizer")
    assert cli.model.generator_step == 9
    learning_rates = [group["lr"] for optimizer in cli.model.optimizers() for group in optimizer.param_groups]
    assert learning_rates == [1e-4, 1e-5]  # critic as trained, generator as now configured
    moments = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["optimizer_states"][1]["state"]
    assert int(moments[0]["step"]) == 9  # Adam's moments continued, not restarted


# ---- atomic writes ---------------------------------------------------------------------------------------------
def test_a_failed_checkpoint_write_keeps_the_previous_last_ckpt(finished_wgan_gp, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(finished_wgan_gp.read_bytes())
    real_save = torch.save

    def disk_full(obj, file, *args, **kwargs):  # half the bytes reach the disk, then ENOSPC
        import io
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(genzoo.checkpoints.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        resume(run_dir, last, 9)
    monkeypatch.setattr(genzoo.checkpoints.torch, "save", real_save)
    assert last.read_bytes() == finished_wgan_gp.read_bytes()
    assert read_checkpoint(last)["zoo"]["schedule"]["step"] == 6
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no partial file


def test_atomic_save_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    path = atomic_save({"version": torch.tensor(1)}, tmp_path / "state.pt")
    monkeypatch.setattr(genzoo.checkpoints.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    with pytest.raises(OSError):
        atomic_save({"version": torch.tensor(2)}, path)
    assert int(load_plain(path)["version"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


# ---- errors that name the file ---------------------------------------------------------------------------------
def test_a_pickle_that_would_run_code_is_refused_by_name(tmp_path, monkeypatch):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "zoo": {}, "payload": Payload()}, path)
    with pytest.raises(ValueError, match="evil.ckpt refused: not a plain-tensor file"):
        read_checkpoint(path)
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="evil.ckpt refused"):
        run_cli(wgan_gp(tmp_path, 6, "--ckpt_path", str(path)))


def write_images(root: Path, count: int = 12) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / "class" / f"{i:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (20 * i, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_a_truncated_image_is_named_or_skipped_with_a_warning(tmp_path):
    paths = write_images(tmp_path)
    paths[3].write_bytes(paths[3].read_bytes()[:200])  # a truncated JPEG
    strict = ImageFolderDataModule(str(tmp_path), batch_size=12, image_size=8, val_size=0, test_size=0)
    strict.setup("fit")
    with pytest.raises(UnreadableImageError, match=r"03.jpg cannot be read: .*skip_unreadable"):
        list(strict.train_dataloader())
    skipping = ImageFolderDataModule(str(tmp_path), batch_size=12, image_size=8, val_size=0, test_size=0,
                                     skip_unreadable=True)
    skipping.setup("fit")
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*03.jpg .*1 skipped so far"):
        (batch,) = list(skipping.train_dataloader())
    assert batch["x"].shape == (12, 3, 8, 8)


def test_ot_solver_state_errors_name_the_file_and_solve_afresh(tmp_path):
    targets = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "solver.pt"
    solver = SemiDiscreteOT(targets, max_steps=5)
    solver.solve(checkpoint=path, checkpoint_every=5)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    fresh = SemiDiscreteOT(targets, max_steps=5)
    with pytest.warns(UserWarning, match=r"solver.pt is not readable \(truncated or corrupt.*solving from scratch"):
        result = fresh.solve(checkpoint=path)
    assert result.steps == 5 and load_plain(path)["step"] == 5
    torch.testing.assert_close(fresh.h, solver.h, rtol=0, atol=0)


def test_wrong_shapes_in_the_ot_problem_are_named():
    targets = torch.randn(10, 3)
    with pytest.raises(ValueError, match="source box's low has 2 coordinates, but the targets have dimension 3"):
        SemiDiscreteOT(targets, low=torch.tensor([-1.0, -1.0]))
    with pytest.raises(ValueError, match="potential has shape \\(9,\\), but there are 10 targets"):
        top_cells(torch.randn(4, 3), targets, torch.zeros(9))


# ---- divergence ------------------------------------------------------------------------------------------------
def test_a_finite_blow_up_stops_the_run_and_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    blow_up = ["--model.init_args.generator_optimizer.init_args.lr", "1e6",
               "--model.init_args.critic_optimizer.init_args.lr", "1e6", "--divergence_guard.every_n_steps", "5"]
    with pytest.raises(DivergenceError, match="has diverged: .* reaches .* earlier checkpoints are kept"):
        run_cli(wgan_gp(tmp_path / "stop", 100, *blow_up))
    for path in (tmp_path / "stop" / "checkpoints").glob("*.ckpt"):  # none written past the limit
        state = read_checkpoint(path)["state_dict"]
        assert max(float(v.abs().max()) for v in state.values() if v.is_floating_point()) <= 1e5
    cli = run_cli(wgan_gp(tmp_path / "warn", 10, *blow_up, "--divergence_guard.action", "warn"))
    assert cli.model.generator_step == 10
    cli = run_cli(wgan_gp(tmp_path / "off", 10, *blow_up, "--divergence_guard.max_abs_parameter", "null"))
    assert cli.model.generator_step == 10
