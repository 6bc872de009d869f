"""The ``classifier`` feature extractor: training, checkpoints, name resolution, errors and the training command."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from genzoo.callbacks.extractors.train import main as train_main
from genzoo.datamodules.images import Digits
from genzoo.evaluation.extractors.base import build_extractor, file_sha256
from genzoo.evaluation.extractors.classifier import (
    ClassifierExtractor,
    ClassifierNet,
    load_classifier,
    save_classifier,
    train_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_digits():
    torch.set_num_threads(1)
    datamodule = Digits(batch_size=64, val_size=0)
    net, accuracy = train_classifier(datamodule, epochs=8, lr=3e-3, seed=0, device="cpu", log=lambda message: None)
    return datamodule, net, accuracy


@pytest.fixture()
def digits_checkpoint(trained_digits, tmp_path):
    _, net, accuracy = trained_digits
    return save_classifier(tmp_path / "digits_classifier.pt", net, "digits", accuracy)


def digits_batch(datamodule, n: int = 32) -> torch.Tensor:
    return torch.stack([datamodule.test_set[i]["x"] for i in range(n)])


def test_network_shapes():
    for channels, size in ((1, 8), (1, 28), (3, 32)):
        net = ClassifierNet(channels, 10, size, width=8, feature_dim=16).eval()
        x = torch.rand(3, channels, size, size)
        assert net.features(x).shape == (3, 16)
        assert net(x).shape == (3, 10)
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierNet(1, 1, 8)


def test_training_on_digits_reaches_high_test_accuracy(trained_digits):
    _, net, accuracy = trained_digits
    assert not net.training
    assert accuracy > 0.9


def test_checkpoint_round_trip_gives_identical_features(trained_digits, digits_checkpoint):
    datamodule, net, accuracy = trained_digits
    checkpoint = torch.load(digits_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["format"] == "genzoo-classifier" and checkpoint["version"] == 1
    assert checkpoint["config"] == {"in_channels": 1, "num_classes": 10, "image_size": 8, "width": 32,
                                    "feature_dim": 128}
    assert checkpoint["data"] == "digits" and checkpoint["test_accuracy"] == pytest.approx(accuracy)

    extractor = build_extractor(f"classifier:{digits_checkpoint}")
    assert isinstance(extractor, ClassifierExtractor) and extractor.dim == 128
    x = digits_batch(datamodule)  # in the datamodule's (-1, 1)
    features = extractor(x, datamodule.value_range)
    assert features.shape == (len(x), 128) and features.dtype == torch.float32
    with torch.no_grad():
        expected = net.features((x + 1) / 2)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    # the same images given in (0, 1) give the same features
    torch.testing.assert_close(extractor((x + 1) / 2, (0.0, 1.0)), expected, rtol=1e-6, atol=1e-6)
    assert extractor.protocol() == {"extractor": "classifier", "weights": file_sha256(digits_checkpoint)[:16],
                                    "dataset": "digits", "dim": 128, "input": "1x8x8 in [0,1]"}


def test_names_resolve_through_the_extractors_dir(trained_digits, tmp_path, monkeypatch):
    _, net, accuracy = trained_digits
    folder = tmp_path / "extractors"
    save_classifier(folder / "digits.pt", net, "digits", accuracy)
    monkeypatch.setenv("GENZOO_EXTRACTORS_DIR", str(folder))
    extractor = build_extractor("classifier:digits")
    assert extractor.path == folder / "digits.pt"
    assert extractor.protocol()["dataset"] == "digits"


def test_missing_checkpoint_names_the_train_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_EXTRACTORS_DIR", str(tmp_path))
    expected = (f"zoo train-extractor --data fashion_mnist --data_dir DATA_DIR --out "
                f"{tmp_path / 'fashion_mnist.pt'}")
    with pytest.raises(FileNotFoundError) as error:
        build_extractor("classifier:fashion_mnist")
    assert expected in str(error.value)
    missing = tmp_path / "elsewhere" / "mine.pt"
    with pytest.raises(FileNotFoundError, match="zoo train-extractor --data") as error:
        build_extractor(f"classifier:{missing}")
    assert f"--out {missing}" in str(error.value)
    with pytest.raises(ValueError, match="classifier:fashion_mnist"):
        build_extractor("classifier")


def test_corrupt_and_foreign_files_raise_value_errors_naming_them(digits_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(digits_checkpoint.read_bytes()[:1000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    state_dict_only = tmp_path / "state_dict.pt"
    torch.save(ClassifierNet(1, 10, 8).state_dict(), state_dict_only)
    for path in (corrupt, foreign, state_dict_only):
        with pytest.raises(ValueError, match=str(path)):
            build_extractor(f"classifier:{path}")

    checkpoint = torch.load(digits_checkpoint, weights_only=True)
    broken = tmp_path / "broken.pt"
    for change in ({"version": 2}, {"config": {"in_channels": 1}},
                   {"config": {**checkpoint["config"], "width": 16}}):
        torch.save({**checkpoint, **change}, broken)
        with pytest.raises(ValueError, match=str(broken)):
            load_classifier(broken)


def test_wrong_input_shape_names_both_shapes(digits_checkpoint):
    extractor = build_extractor(f"classifier:{digits_checkpoint}")
    with pytest.raises(ValueError) as error:
        extractor(torch.zeros(4, 3, 32, 32), (-1.0, 1.0))
    assert "1x8x8" in str(error.value) and "(4, 3, 32, 32)" in str(error.value)
    with pytest.raises(ValueError, match="1x8x8"):
        extractor(torch.zeros(4, 64), (-1.0, 1.0))


def test_extractor_stays_frozen_in_eval_mode(digits_checkpoint):
    extractor = build_extractor(f"classifier:{digits_checkpoint}")
    extractor.train()
    assert not extractor.training and not any(module.training for module in extractor.modules())
    assert not any(parameter.requires_grad for parameter in extractor.parameters())
    before = {key: value.clone() for key, value in extractor.state_dict().items()}
    extractor(torch.rand(16, 1, 8, 8), (0.0, 1.0))  # batch-norm running statistics must not move
    assert all(torch.equal(before[key], value) for key, value in extractor.state_dict().items())


def test_training_command_on_digits(tmp_path):
    out = tmp_path / "cli" / "digits.pt"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = train_main(["--data", "digits", "--out", str(out), "--epochs", "6", "--batch_size", "64",
                             "--lr", "3e-3", "--fid"])
    last_line = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert last_line == result
    assert out.is_file() and result["path"] == str(out)
    assert result["data"] == "digits" and result["epochs"] == 6 and result["test_accuracy"] > 0.9
    assert result["seconds"] > 0 and result["n_train"] == 1647 and result["n_test"] == 150
    assert result["fid_train_test"] >= 0
    extractor = build_extractor(f"classifier:{out}")
    assert extractor.protocol()["weights"] == result["protocol"]["weights"]
    assert extractor.test_accuracy == pytest.approx(result["test_accuracy"], abs=1e-4)
