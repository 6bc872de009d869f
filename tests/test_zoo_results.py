"""benchmarks.zoo_results: the results page end to end on digits with tiny budgets, and its bad input."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import ocgan_eval_beta, zoo_results
from genzoo.callbacks import OctaveBetaSchedule
from genzoo.gan import DCGAN
from genzoo.nets import OCGANCritic, OCGANGenerator


def run(tmp_path, *extra: str) -> dict:
    return zoo_results.main(["--data", "digits", "--n_eval", "200", "--out", str(tmp_path / "out"),
                             "--runs", str(tmp_path / "runs"), *extra])


def test_two_models_in_steps_then_a_third_keeps_the_first_two(tmp_path, capsys):
    summary = run(tmp_path, "--unit", "steps", "--budget", "4", "--models", "wgan_gp,flexae")
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    for name in ("wgan_gp", "flexae"):
        model = results["models"][name]
        assert model["steps"] == 4  # the budget, in the paper's unit
        assert [p["steps"] for p in model["curve"]] == sorted(p["steps"] for p in model["curve"])
        assert len(model["curve"]) == 4 and model["curve"][-1]["fid"] == pytest.approx(model["fid"], abs=1e-3)
        assert {"fid", "kid", "precision", "recall", "prd_f8", "prd_f1_8", "samples_per_s"} <= set(model)
        assert (out / "models" / f"{name}.png").is_file()
    # four steps buy nothing: the per-pixel Gaussian is better, and the page says so
    assert set(summary["worse_than_gaussian"]) == {"wgan_gp", "flexae"}
    assert summary["baselines"]["gaussian"] < min(summary["fid"].values())
    table = (out / "results.md").read_text()
    assert "| wgan_gp |" in table and "baseline: gaussian" in table and "Worse than the per-pixel Gaussian" in table
    for image in ("samples.png", "fid_vs_time.png"):
        assert (out / image).stat().st_size > 1000
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["unit"] == "steps"

    first = (out / "models" / "wgan_gp.json").read_text()
    summary = run(tmp_path, "--unit", "steps", "--budget", "4", "--models", "wae_mmd")
    assert set(summary["fid"]) == {"wgan_gp", "flexae", "wae_mmd"}
    assert (out / "models" / "wgan_gp.json").read_text() == first


def test_a_seconds_budget_stops_once_spent(tmp_path):
    summary = run(tmp_path, "--budget", "1.5", "--models", "wgan_gp")
    model = json.loads((tmp_path / "out" / "models" / "wgan_gp.json").read_text())
    assert model["train_seconds"] >= 1.5 and model["samples_per_s"] > 0  # it stopped once spent, not before
    assert summary["unit"] == "seconds"


def test_evaluation_size_and_range():
    x = torch.rand(3, 1, 32, 32)  # a [0, 1] model at 32 px
    y = zoo_results.to_evaluation_size(x, (0.0, 1.0), 28)
    assert y.shape == (3, 1, 28, 28) and y.min() >= -1 and y.max() <= 1
    assert y.mean().item() == pytest.approx(2 * x.mean().item() - 1, abs=0.02)


def test_gaussian_baseline_matches_the_training_moments():
    torch.manual_seed(0)
    images = torch.rand(4000, 1, 4, 4) * 0.5 - 0.25  # inside [-1, 1]: clamping changes nothing
    baseline = zoo_results.GaussianBaseline(images, (-1.0, 1.0), 4)
    samples = baseline.generate(baseline.sample_latents(20000, torch.Generator().manual_seed(0)))
    assert samples.shape == (20000, 1, 4, 4)
    assert torch.allclose(samples.flatten(1).mean(0), images.flatten(1).mean(0), atol=0.01)
    assert torch.allclose(torch.cov(samples.flatten(1).T), torch.cov(images.flatten(1).T), atol=0.002)


@pytest.mark.parametrize("arguments, message", [
    (["--models", "stylegan"], "unknown model"),
    (["--models", "dcgan_octave"], "no config for --data digits"),
    (["--budget", "0"], "--budget must be a positive"),
    (["--budget", "-3"], "--budget must be a positive"),
    (["--unit", "steps", "--budget", "2.5"], "whole number"),
])
def test_bad_input_is_named(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as error:
        run(tmp_path, *arguments)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_a_data_set_without_a_protocol_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        zoo_results.main(["--data", "cifar10", "--out", str(tmp_path)])
    assert "has no results protocol" in capsys.readouterr().err



def test_octave_checkpoints_are_read_with_both_betas(tmp_path, capsys, monkeypatch):
    import functools

    from genzoo.datamodules.base import TensorDictDataset
    from tests.helpers import quiet_trainer

    torch.manual_seed(0)
    model = DCGAN((1, 32, 32), latent_dim=8,
                  generator=functools.partial(OCGANGenerator, width=8, eval_beta=(0.7, 0.3)),
                  critic=functools.partial(OCGANCritic, width=8))
    images = torch.utils.data.DataLoader(TensorDictDataset(x=torch.rand(32, 1, 32, 32) * 2 - 1), batch_size=16)
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[OctaveBetaSchedule("combination", epochs=50)])
    trainer.fit(model, images)
    loaded = []
    monkeypatch.setattr(ocgan_eval_beta, "load_model", lambda path, *_: loaded.append(path) or model)
    summary = ocgan_eval_beta.main(["--results", "digits-1s", "--models", "dcgan_octave", "--runs",
                                    str(tmp_path / "runs"), "--n_eval", "200"])
    assert loaded == [str(tmp_path / "runs" / "digits-1s" / "dcgan_octave" / "checkpoints" / "last.ckpt")]
    reading = summary["dcgan_octave"]
    assert reading["training_beta"] == pytest.approx([0.22, 0.78])  # the schedule after epoch 1 of 50
    assert reading["fid_eval_beta"] != reading["fid_training_beta"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
