"""`zoo evaluate`, `zoo sample` and `zoo train-extractor`: the verbs of genzoo.commands (digits, pixels, small n)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.utils import save_image

from genzoo.commands import run_verb
from genzoo.commands.evaluate import main as evaluate
from genzoo.commands.sample import main as sample
from genzoo.datamodules import Digits
from genzoo.wgan import WGANGP
from tests.helpers import quiet_trainer

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--extractor", "pixels", "--metrics", "fid,precision_recall", "--cache_dir", "", "--device", "cpu"]


def fid(record: dict) -> float:
    return record["fid"]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    """Digits' 150 test images as PNGs (grey, written as RGB like torchvision's save_image does)."""
    folder = tmp_path_factory.mktemp("digits_png")
    dm = Digits()
    dm.setup("fit")
    for i in range(len(dm.test_set)):
        save_image((dm.test_set[i]["x"] + 1) / 2, folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ckpt")
    dm = Digits(batch_size=32)
    torch.manual_seed(0)
    model = WGANGP(latent_dim=8, data_shape=dm.data_shape)
    trainer = quiet_trainer(tmp, max_steps=2, enable_checkpointing=True)
    trainer.fit(model, dm)
    path = tmp / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_a_folder_of_the_reference_images_scores_fid_near_zero(digits_folder, capsys):
    itself = evaluate(["--samples", str(digits_folder), "--reference", str(digits_folder), *QUICK])
    assert abs(fid(itself)) < 1e-3 and itself["precision"] == 1.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == itself
    assert itself["protocol"]["samples"]["value_range_from"] == "dtype"
    # the same PNGs against the datamodule split they came from: 8-bit rounding only
    split = evaluate(["--samples", str(digits_folder), "--data", "digits", "--reference_split", "test",
                      "--n_reference", "0", *QUICK])
    assert abs(fid(split)) < 1e-2 and split["protocol"]["samples"]["given"] == 150
    assert split["protocol"]["samples"]["value_range"] == [0.0, 255.0]


def test_pt_and_npz_of_the_same_samples_give_the_same_numbers(tmp_path):
    x = torch.rand(60, 1, 8, 8) * 2 - 1
    torch.save(x, tmp_path / "s.pt")
    np.savez(tmp_path / "s.npz", other=np.zeros(3), samples=x.numpy())
    np.save(tmp_path / "nhwc.npy", x.permute(0, 2, 3, 1).numpy())
    args = ["--data", "digits", "--n_reference", "100", "--metrics", "fid,precision_recall,prd", "--prd_clusters", "4",
            "--prd_runs", "1", *QUICK[:2], *QUICK[4:]]
    pt = evaluate(["--samples", str(tmp_path / "s.pt"), *args, "--prd_plot", str(tmp_path / "prd.png")])
    npz = evaluate(["--samples", str(tmp_path / "s.npz"), "--key", "samples", *args])
    npy = evaluate(["--samples", str(tmp_path / "nhwc.npy"), *args])
    for other in (npz, npy):
        assert {k: v for k, v in other.items() if k not in ("samples", "seconds", "protocol", "prd_plot")} == \
               {k: v for k, v in pt.items() if k not in ("samples", "seconds", "protocol", "prd_plot")}
    assert pt["protocol"]["samples"]["value_range"] == [-1.0, 1.0]
    assert pt["protocol"]["samples"]["value_range_from"] == "inferred"
    assert npy["protocol"]["samples"]["layout"] == "NHWC"
    assert (tmp_path / "prd.png").stat().st_size > 0
    given = evaluate(["--samples", str(tmp_path / "s.pt"), "--value_range=-1,1", *args])
    assert given["fid"] == pt["fid"] and given["protocol"]["samples"]["value_range_from"] == "given"


def test_saved_reference_features_stand_in_for_the_data(tmp_path):
    """--save_reference writes the reference's features; --reference FILE gives the same numbers without the data."""
    x = torch.rand(60, 1, 8, 8) * 2 - 1
    torch.save(x, tmp_path / "s.pt")
    base = ["--samples", str(tmp_path / "s.pt"), "--n_reference", "100", *QUICK]
    from_data = evaluate([*base, "--data", "digits", "--save_reference", str(tmp_path / "digits.pt")])
    from_file = evaluate([*base, "--reference", str(tmp_path / "digits.pt")])
    assert from_file["fid"] == from_data["fid"] and from_file["precision"] == from_data["precision"]
    assert from_file["protocol"]["datamodule"] == "saved features"
    foreign = torch.load(tmp_path / "digits.pt", weights_only=True)
    torch.save({**foreign, "protocol": {"extractor": "another"}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="another extractor protocol"):
        evaluate([*base, "--reference", str(tmp_path / "foreign.pt")])
    torch.save(x[:, :, :4], tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"shape"):
        evaluate(["--samples", str(tmp_path / "small.pt"), "--reference", str(tmp_path / "digits.pt"), *QUICK])


def test_sampled_files_evaluate_like_the_checkpoint(checkpoint, tmp_path):
    common = ["--data", "digits", "--n_reference", "80", "--seed", "3", "--batch_size", "16", *QUICK]
    direct = evaluate(["--ckpt", str(checkpoint), "--n", "40", *common])
    sample(["--ckpt", str(checkpoint), "--n", "40", "--seed", "3", "--batch_size", "16", "--device", "cpu",
            "--out", str(tmp_path / "s.pt")])
    sample(["--ckpt", str(checkpoint), "--n", "40", "--seed", "3", "--batch_size", "16", "--device", "cpu",
            "--out", str(tmp_path / "s.npz")])
    for file in ("s.pt", "s.npz"):
        scored = evaluate(["--samples", str(tmp_path / file), *common])
        assert scored["fid"] == direct["fid"] and scored["precision"] == direct["precision"], file
        assert scored["protocol"]["n_generated"] == 40
    # a directory (PNGs + samples.pt) and a grid
    folder = sample(["--ckpt", str(checkpoint), "--n", "10", "--device", "cpu", "--out", str(tmp_path / "pngs")])
    assert folder["written"] == "images" and len(list((tmp_path / "pngs").glob("*.png"))) == 10
    assert torch.load(tmp_path / "pngs" / "samples.pt").shape == (10, 1, 8, 8)
    grid = sample(["--ckpt", str(checkpoint), "--n", "9", "--device", "cpu", "--out", str(tmp_path / "g.png")])
    assert grid["written"] == "grid" and (tmp_path / "g.png").is_file()
    pngs = evaluate(["--samples", str(tmp_path / "pngs"), "--n_reference", "80", *common[:2], *QUICK])
    assert pngs["protocol"]["samples"]["layout"] == "NCHW" and pngs["fid"] > 0


def run_zoo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from genzoo.cli import main; main()", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_user_errors_are_one_line_naming_the_file(tmp_path, digits_folder, capsys):
    torch.save(torch.rand(20, 3, 8, 8), tmp_path / "rgb.pt")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    np.savez(tmp_path / "a.npz", x=np.zeros((20, 1, 8, 8), np.float32))
    torch.save(torch.rand(20, 1, 8, 8) * 10, tmp_path / "wide.pt")
    cases = {
        ("--samples", str(tmp_path / "rgb.pt"), "--data", "digits"): r"rgb.pt have shape \(3, 8, 8\) \(N=20\) but "
                                                                     r"the reference --data digits has \(1, 8, 8\)",
        ("--samples", str(tmp_path / "broken"), "--data", "digits"): r"image .*a.png cannot be read",
        ("--samples", str(tmp_path / "missing.npz"), "--data", "digits"): r"missing.npz do not exist",
        ("--samples", str(tmp_path / "a.npz"), "--key", "y", "--data", "digits"): r"a.npz has no array 'y'",
        ("--samples", str(tmp_path / "wide.pt"), "--data", "digits"): r"wide.pt span .* pass --value_range",
        ("--samples", str(digits_folder), "--reference", str(tmp_path / "nowhere")): r"nowhere does not exist",
        ("--ckpt", str(tmp_path / "missing.ckpt"), "--data", "digits"): r"missing.ckpt does not exist",
    }
    for args, pattern in cases.items():
        assert run_verb("evaluate", [*args, *QUICK]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("zoo evaluate: error: "), err
        assert __import__("re").search(pattern, err), (pattern, err)
    assert run_verb("sample", ["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "zoo sample: error: checkpoint" in capsys.readouterr().err


def test_the_zoo_script_lists_and_dispatches_the_verbs(tmp_path, capsys):
    for verb in ("evaluate", "sample", "train-extractor"):
        with pytest.raises(SystemExit) as shown:
            run_verb(verb, ["--help"])
        assert shown.value.code == 0 and f"usage: zoo {verb}" in capsys.readouterr().out
    listing = run_zoo("--help")
    assert listing.returncode == 0
    for verb in ("evaluate", "sample", "train-extractor", "configs", "fit"):
        assert verb in listing.stdout, verb
    failed = run_zoo("evaluate", "--samples", str(tmp_path / "none.pt"), "--data", "digits")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip() == f"zoo evaluate: error: samples {tmp_path / 'none.pt'} do not exist"
