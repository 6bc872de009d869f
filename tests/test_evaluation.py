"""The evaluation callback and Evaluator: one extraction pass, logged protocol and plots, the reference cache,
DDP sharding, and the W&B history."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger

from genzoo.callbacks import Evaluation
from genzoo.commands.evaluate import main as evaluate_checkpoint
from genzoo.datamodules.images import ImageDataModule
from genzoo.evaluation import METRICS, Evaluator, MetricInputs, MetricOptions, register_metric
from genzoo.evaluation import metrics as M
from genzoo.evaluation.extractors import FeatureExtractor, build_extractor, register_extractor
from genzoo.evaluation.extractors.base import to_unit_range
from genzoo.evaluation.features import normalized_samples, subset_indices
from genzoo.evaluation.reference import sample_fingerprint
from genzoo.wgan import WGANGP
from tests.helpers import (
    ImagesDataModule,
    SplitImages,
    prepared_config,
    quiet_trainer,
    spread_inception_logits,
    wandb_run_contents,
)

REPO = Path(__file__).resolve().parents[1]
ALL_METRICS = ("fid", "kid", "precision_recall", "prd", "memorization")


@register_extractor("counting")
class CountingExtractor(FeatureExtractor):
    """Pixels times a factor (the spec's argument), counting the samples it sees: cache hits extract nothing."""

    seen = 0

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__()
        self.factor = factor

    @classmethod
    def from_spec(cls, argument):
        return cls(float(argument or 1.0))

    def features(self, x, value_range):
        CountingExtractor.seen += len(x)
        return to_unit_range(x, value_range).flatten(1) * self.factor

    def protocol(self):
        return {"extractor": "counting", "factor": self.factor}


def small_options() -> MetricOptions:
    return MetricOptions(kid_subsets=5, kid_subset_size=20, prd_clusters=4, prd_runs=2)


def model_for(dm) -> WGANGP:
    torch.manual_seed(0)
    return WGANGP(latent_dim=8, data_shape=dm.data_shape)


def test_callback_logs_every_metric_with_its_protocol_and_plots(tmp_path):
    dm = SplitImages()
    evaluation = Evaluation(extractor="pixels", metrics=ALL_METRICS, n_samples=48, n_reference=48, every_n_steps=10,
                            every_n_epochs=None, cache_dir=str(tmp_path / "cache"), kid_subsets=5,
                            kid_subset_size=20, prd_clusters=4, prd_runs=2)
    trainer = quiet_trainer(tmp_path, max_steps=20, logger=CSVLogger(tmp_path), callbacks=[evaluation])
    trainer.fit(model_for(dm), dm)
    log_dir = Path(trainer.logger.log_dir)
    header = (log_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    expected = ["fid", "kid", "kid_std", "precision", "recall", "f_score", "prd_f8", "prd_f1_8", "pms", "ims",
                "pms_train_train", "ims_train_train", "pms_test_train", "ims_test_train", "seconds"]
    assert {f"eval/{name}" for name in expected} <= set(header)
    protocol = yaml.full_load((log_dir / "hparams.yaml").read_text())["evaluation"]
    assert protocol["extractor"]["extractor"] == "pixels"
    assert (protocol["n_generated"], protocol["reference_split"], protocol["n_reference"]) == (48, "train", 48)
    assert protocol["kid"] == {"subsets": 5, "subset_size": 20, "seed": 2020}
    run = Path(trainer.default_root_dir)  # the run directory's, whatever the logger
    events = [json.loads(line) for line in (run / "evaluation.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [10, 20]  # the train-end event falls on the step already evaluated
    assert [h["fid"] for h in evaluation.history] == [e["fid"] for e in events]
    assert all(e["precision"] <= 1 and 0 < e["fid"] for e in events)
    images = {p.name for p in (run / "images").glob("*.png")}
    assert {"eval_prd_curve_step20.png", "eval_fid_curve_step20.png"} <= images
    assert float(trainer.callback_metrics["eval/fid"]) == pytest.approx(events[-1]["fid"])


def test_evaluator_equals_the_metrics_on_directly_extracted_features(tmp_path):
    dm = SplitImages()
    dm.setup()
    model = model_for(dm)
    evaluator = Evaluator("pixels", ("fid", "kid", "precision_recall", "prd"), n_samples=40, n_reference=50,
                          seed=3, cache_dir=None, options=small_options())
    result = evaluator.evaluate(model, dm)
    extractor = build_extractor("pixels")
    fake = extractor(model.generate(model.sample_latents(40, generator=torch.Generator().manual_seed(3))),
                     (-1.0, 1.0))
    indices = subset_indices(len(dm.train_set), 50, seed=3)
    real = extractor(torch.stack([dm.train_set[i]["x"] for i in indices]), (-1.0, 1.0))
    assert result.values["fid"] == pytest.approx(M.frechet_distance(fake, real), rel=1e-10)
    assert result.values["precision"] == M.precision_recall(real, fake)["precision"]
    # KID's subsets are drawn with torch-fidelity's seed, not the evaluation's
    assert result.values["kid"] == pytest.approx(M.kernel_distance(fake, real, 5, 20, seed=2020)[0], rel=1e-10)
    precision, recall = M.prd(fake, real[:40], num_clusters=4, num_runs=2, seed=3)
    assert result.values["prd_f8"] == pytest.approx(M.prd_f_beta(precision, recall)[0], rel=1e-10)


def test_the_inception_score_comes_from_the_pass_that_gives_the_fid_features(random_inception_weights):
    dm = SplitImages()
    evaluator = Evaluator(f"inception:{random_inception_weights}", ("fid", "inception_score"), n_samples=10,
                          n_reference=10, cache_dir=None, options=MetricOptions(inception_score_splits=2))
    spread_inception_logits(evaluator.feature_extractor)
    passes = []  # the network's outputs, (pool3, logits) per batch
    evaluator.feature_extractor.net.register_forward_hook(lambda module, inputs, outputs: passes.append(outputs))
    result = evaluator.evaluate(model_for(dm), dm)
    assert [len(pool3) for pool3, _ in passes] == [10, 10], "one pass over the reference, one over the generated"
    (real, _), (fake, fake_logits) = passes
    assert result.values["fid"] == pytest.approx(M.frechet_distance(fake, real), rel=1e-10)
    assert (result.values["is_mean"], result.values["is_std"]) == M.inception_score(fake_logits, splits=2)
    assert result.values["is_mean"] > 1.001  # an untrained generator's samples look alike, but not identical
    assert result.protocol["inception_score"] == {"splits": 2}


def test_reference_features_are_cached_and_recomputed_when_the_key_changes(tmp_path):
    dm = SplitImages()
    cache = tmp_path / "cache"

    def run(dm=dm, spec="counting", n_reference=50):
        CountingExtractor.seen = 0
        Evaluator(spec, ("fid",), n_samples=30, n_reference=n_reference, cache_dir=cache).evaluate(model_for(dm), dm)
        return CountingExtractor.seen

    assert run() == 50 + 30
    assert run() == 30, "a second evaluator must reuse the cached reference features"
    assert len(list(cache.glob("*.pt"))) == 1
    assert run(n_reference=60) == 60 + 30  # another subset size
    assert run(spec="counting:2") == 50 + 30  # another extractor protocol
    assert run(dm=SplitImages(seed=1)) == 50 + 30  # other data
    for path in cache.glob("*.pt"):
        path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring reference cache"):
        assert run() == 50 + 30


class PrivatelyOffsetImages(SplitImages):
    """SplitImages whose middle training sample is offset by a setting kept only in a private attribute: neither
    a public attribute nor the reference cache's fingerprint (the first and last 16 samples) tells it apart."""

    def __init__(self, offset: float = 0.0, **settings) -> None:
        super().__init__(**settings)
        self._offset = offset

    def build_datasets(self):
        train, val, test = super().build_datasets()
        train.tensors["x"][len(train) // 2] += self._offset
        return train, val, test


def real_samples_extracted(dm, cache) -> int:
    """Real samples the extractor saw in one evaluation of ``dm`` (0: the reference came from the cache)."""
    CountingExtractor.seen = 0
    Evaluator("counting", ("fid",), n_samples=30, n_reference=None, cache_dir=cache).evaluate(model_for(dm), dm)
    return CountingExtractor.seen - 30


def test_differently_configured_datamodules_never_share_a_reference_cache_entry(tmp_path):
    cache = tmp_path / "cache"

    def configurations():  # fresh instances, each configured differently
        return [PrivatelyOffsetImages(), PrivatelyOffsetImages(offset=0.5), PrivatelyOffsetImages(seed=1),
                PrivatelyOffsetImages(num_test=20), SplitImages()]

    plain, offset = configurations()[:2]
    plain.setup(), offset.setup()
    indices = list(range(len(plain.train_set)))
    assert sample_fingerprint(plain.train_set, indices) == sample_fingerprint(offset.train_set, indices)
    assert [real_samples_extracted(dm, cache) for dm in configurations()] == [96] * 5
    assert len(list(cache.glob("*.pt"))) == 5
    assert [real_samples_extracted(dm, cache) for dm in configurations()] == [0] * 5, "equal configurations share one"
    assert real_samples_extracted(PrivatelyOffsetImages(0.5, batch_size=8), cache) == 0  # positional; batch neutral


class InMemoryImages(ImageDataModule):
    """The image datamodules' base, ``download`` flag included, over SplitImages' random images."""

    data_shape = (1, 8, 8)

    def build_datasets(self):
        return SplitImages(seed=self.seed).build_datasets()


def test_the_download_flag_does_not_change_the_reference_cache_entry(tmp_path):
    cache = tmp_path / "cache"
    assert InMemoryImages(download=True).identity() == InMemoryImages(download=False).identity()
    assert real_samples_extracted(InMemoryImages(download=True), cache) == 96
    assert real_samples_extracted(InMemoryImages(download=False), cache) == 0
    assert real_samples_extracted(InMemoryImages(download=False, seed=1), cache) == 96  # the key still follows the data
    assert len(list(cache.glob("*.pt"))) == 2


def test_a_registered_metric_is_computed_by_the_evaluator_and_the_callback(tmp_path):
    @register_metric("mean_gap")
    def mean_gap(inputs: MetricInputs) -> dict[str, float]:
        inputs.protocol["mean_gap"] = {"norm": "euclidean"}
        return {"mean_gap": float((inputs.fake.features.mean(0) - inputs.real.features.mean(0)).norm())}

    try:
        dm = SplitImages()
        evaluation = Evaluation(extractor="pixels", metrics=("fid", "mean_gap"), n_samples=40, n_reference=50,
                                every_n_epochs=None, cache_dir=None)
        trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[evaluation])
        model = model_for(dm)
        trainer.fit(model, dm)
        result = Evaluator("pixels", ("mean_gap",), n_samples=40, n_reference=50, cache_dir=None).evaluate(model, dm)
    finally:
        METRICS.pop("mean_gap")
    pixels = build_extractor("pixels")
    fake = pixels(model.generate(model.sample_latents(40, generator=torch.Generator().manual_seed(0))), (-1.0, 1.0))
    real = pixels(torch.stack([dm.train_set[i]["x"] for i in subset_indices(96, 50, seed=0)]), (-1.0, 1.0))
    assert result.values == {"mean_gap": pytest.approx(float((fake.mean(0) - real.mean(0)).norm()), rel=1e-5)}
    assert result.protocol["mean_gap"] == {"norm": "euclidean"}
    assert evaluation.history[-1]["mean_gap"] == pytest.approx(result.values["mean_gap"], rel=1e-6)
    assert float(trainer.callback_metrics["eval/mean_gap"]) == pytest.approx(result.values["mean_gap"], rel=1e-6)
    with pytest.raises(ValueError, match="unknown or no metrics"):
        Evaluator("pixels", ("mean_gap",))  # unregistered again


def test_a_metric_in_a_module_of_ones_own_is_selected_by_module_and_name(tmp_path):
    """``metrics: [package.module:name]`` in a config imports the module, whose decorator registers the metric."""
    try:
        evaluator = Evaluator("pixels", ("fid", "tests.custom_metric:mean_norm"), n_samples=20, n_reference=20,
                              cache_dir=None)
        assert evaluator.metrics == ("fid", "mean_norm")
        dm = SplitImages()
        result = evaluator.evaluate(model_for(dm), dm)
        assert set(result.values) >= {"fid", "mean_norm"} and result.values["mean_norm"] > 0
    finally:
        METRICS.pop("mean_norm", None)
        sys.modules.pop("tests.custom_metric", None)
    with pytest.raises(ValueError, match="cannot import 'tests.no_such_module'"):
        Evaluator("pixels", ("tests.no_such_module:mean_norm",))


def test_the_evaluation_engine_imports_no_lightning():
    code = ("import sys, genzoo.evaluation, genzoo.evaluation.extractors.pretrained; "
            "print(sorted(m for m in sys.modules if m.partition('.')[0] in ('lightning', 'pytorch_lightning')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_bad_evaluation_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown or no metrics"):
        Evaluator("pixels", ("fid", "is"))
    with pytest.raises(ValueError, match="reference_split"):
        Evaluator("pixels", reference_split="validation")
    dm = ImagesDataModule()  # no test split
    with pytest.raises(ValueError, match="no 'test' split"):
        Evaluator("pixels", ("memorization",), n_samples=8, n_reference=8, cache_dir=None).evaluate(model_for(dm), dm)
    with pytest.raises(ValueError, match="200 samples in each set .* got 40"):
        Evaluator("pixels", ("prd",), n_samples=40, n_reference=40, cache_dir=None).evaluate(model_for(dm), dm)


def test_the_inception_score_needs_the_inception_extractor(tmp_path):
    dm = ImagesDataModule()
    message = r"\['inception_score'\] need the class logits of the Inception network; the 'pixels' extractor gives none"
    with pytest.raises(ValueError, match=message):
        Evaluator("pixels", ("fid", "inception_score"), n_samples=8, n_reference=8, cache_dir=None).evaluate(
            model_for(dm), dm)
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[
        Evaluation(extractor="pixels", metrics=("fid", "inception_score"), n_samples=8, n_reference=8,
                   cache_dir=None)])
    with pytest.raises(ValueError, match=message):  # at the start of fit, not at the first evaluation
        trainer.fit(model_for(dm), dm)
    assert trainer.global_step == 0


class ScaledImages:
    """A stand-in model whose samples are given images times a constant, and whose reconstructions are its inputs
    times the same constant."""

    device = torch.device("cpu")

    def __init__(self, images: torch.Tensor, scale: float, value_range=(-1.0, 1.0)) -> None:
        self.images, self.scale, self.value_range = images, scale, value_range

    def sample_latents(self, n, generator=None):
        return torch.arange(n)  # sample i is image i

    def generate(self, indices):
        return self.scale * self.images[indices]

    def reconstruct(self, x):
        return self.scale * x


def test_minmax_sample_normalization_rescales_each_generated_image_and_leaves_real_ones(tmp_path):
    """FlexAE's FID protocol: generated samples and reconstructions are min-max normalised image by image, real
    images are not. A generator of the test images times 0.5 gets what the images themselves get after the
    rescaling, computed here by hand."""
    dm = SplitImages()
    dm.setup()
    images = torch.stack([dm.test_set[i]["x"] for i in range(len(dm.test_set))])

    def evaluate(scale, normalization):
        evaluator = Evaluator("pixels", ("fid", "reconstruction_fid"), n_samples=len(images), reference_split="test",
                              n_reference=None, cache_dir=None, sample_normalization=normalization)
        return evaluator.evaluate(ScaledImages(images, scale), dm)

    lowest = images.amin(dim=(1, 2, 3), keepdim=True)
    highest = images.amax(dim=(1, 2, 3), keepdim=True)
    stretched = (images - lowest) / (highest - lowest) * 2 - 1  # each image spans [-1, 1]
    pixels = build_extractor("pixels")
    expected = M.frechet_distance(pixels(stretched, (-1.0, 1.0)), pixels(images, (-1.0, 1.0)))
    halved = evaluate(0.5, "none")
    normalized = evaluate(0.5, "minmax")
    assert normalized.values["fid"] == pytest.approx(expected, rel=1e-5)
    assert normalized.values["reconstruction_fid"] == pytest.approx(expected, rel=1e-5)
    assert normalized.values["fid"] == pytest.approx(evaluate(1.0, "minmax").values["fid"], rel=1e-5)
    assert halved.values["fid"] > 10 * expected  # unnormalised, the halved contrast is far from the data
    assert normalized.protocol["sample_normalization"] == "minmax"
    assert halved.protocol["sample_normalization"] == "none"
    torch.testing.assert_close(normalized_samples(torch.full((1, 1, 2, 2), 0.3), (0.0, 1.0), "minmax"),
                               torch.zeros(1, 1, 2, 2))  # a constant image: the low end, not a division by zero
    assert Evaluation(extractor="pixels", sample_normalization="minmax").evaluator.sample_normalization == "minmax"
    with pytest.raises(ValueError, match="sample_normalization must be one of"):
        Evaluator("pixels", sample_normalization="zscore")
    with pytest.raises(ValueError, match="value_range, which must be finite"):
        Evaluator("pixels", ("fid",), n_samples=8, n_reference=8, cache_dir=None,
                  sample_normalization="minmax").evaluate(ScaledImages(images, 1.0, (-math.inf, math.inf)), dm)


def test_ddp_sharded_evaluation_equals_the_single_process_value(tmp_path):
    """2-process DDP (gloo): each rank generates and extracts half the samples; the gathered metrics equal a
    single-process evaluation of the final checkpoint."""
    args = {"extractor": "pixels", "metrics": list(ALL_METRICS), "n_samples": 61, "n_reference": 70,
            "every_n_epochs": None, "cache_dir": str(tmp_path / "cache"), "kid_subsets": 5, "kid_subset_size": 20,
            "prd_clusters": 6, "prd_runs": 2}
    config = prepared_config("configs/wgan_gp/digits.yaml", tmp_path / "config", **args)
    root = tmp_path / "ddp"
    command = [sys.executable, "-m", "genzoo.cli", "fit", "--config", str(config), "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.max_steps", "12", "--trainer.default_root_dir", str(root),
               "--data.init_args.batch_size", "16"]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = json.loads((root / "evaluation.jsonl").read_text().splitlines()[-1])
    # the evaluate command on the checkpoint, single process
    single = evaluate_checkpoint([
        "--ckpt", str(root / "checkpoints" / "last.ckpt"), "--data", "digits", "--image_size", "8",
        "--extractor", "pixels", "--metrics", ",".join(ALL_METRICS), "--n", "61", "--n_reference", "70",
        "--kid_subsets", "5", "--kid_subset_size", "20", "--prd_clusters", "6", "--prd_runs", "2", "--cache_dir", "",
        "--device", "cpu"])
    for name in ("fid", "kid", "precision", "recall", "prd_f8", "prd_f1_8", "pms", "ims", "pms_test_train"):
        assert ddp[name] == pytest.approx(single[name], rel=1e-5, abs=1e-7), name
    assert single["protocol"] == ddp["protocol"]


def test_the_evaluate_command_prints_json_and_names_bad_input(tmp_path, capsys):
    dm = SplitImages()
    model = model_for(dm)
    trainer = quiet_trainer(tmp_path, max_steps=2, enable_checkpointing=True)
    trainer.fit(model, dm)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    common = ["--ckpt", str(ckpt), "--data", "digits", "--extractor", "pixels", "--metrics", "fid,precision_recall",
              "--n", "40", "--n_reference", "40", "--cache_dir", "", "--device", "cpu"]
    record = evaluate_checkpoint(common)  # digits at 8 px: the model's 1x8x8
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record
    assert record["fid"] > 0 and 0 <= record["precision"] <= 1 and record["protocol"]["n_generated"] == 40
    with pytest.raises(ValueError, match=r"generates \(1, 8, 8\) but --data digits yields \(1, 16, 16\)"):
        evaluate_checkpoint([*common, "--image_size", "16"])
    old = torch.load(ckpt, weights_only=True)
    del old["zoo"]["class_path"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="pass --model"):
        evaluate_checkpoint([*common, "--ckpt", str(tmp_path / "old.ckpt")])
    again = evaluate_checkpoint([*common, "--ckpt", str(tmp_path / "old.ckpt"), "--model", "genzoo.wgan.WGANGP"])
    assert {**again, "ckpt": None, "seconds": None} == {**record, "ckpt": None, "seconds": None}
    minmax = evaluate_checkpoint([*common, "--sample_normalization", "minmax"])
    assert minmax["protocol"]["sample_normalization"] == "minmax" and minmax["fid"] != record["fid"]


def test_the_fid_series_lands_in_the_wandb_run_history(tmp_path, monkeypatch):
    from genzoo.loggers import ZooWandbLogger

    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    dm = SplitImages()
    evaluation = Evaluation(extractor="pixels", metrics=("fid", "prd"), n_samples=40, n_reference=40,
                            every_n_steps=6, every_n_epochs=None, cache_dir=None, prd_clusters=4, prd_runs=1)
    logger = ZooWandbLogger(project="genzoo-test", save_dir=str(tmp_path))
    trainer = quiet_trainer(tmp_path, max_steps=18, logger=logger, callbacks=[evaluation])
    trainer.fit(model_for(dm), dm)
    import wandb

    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()
    history, config = wandb_run_contents(next(run_dir.glob("*.wandb")))
    fid = [row["eval/fid"] for row in history if "eval/fid" in row]
    assert fid == pytest.approx([h["fid"] for h in evaluation.history]) and len(fid) == 3
    plots = [row for row in history if row.get("eval/prd_curve/_type") == "images/separated"]
    assert len(plots) == 3, "the PRD plots were not logged as W&B images"
    assert config["evaluation"]["n_generated"] == 40, "the protocol is not in the run's config"


def test_a_missing_classifier_stops_the_run_at_once_or_is_trained_on_request(tmp_path, monkeypatch):
    from genzoo.datamodules import Digits

    monkeypatch.setenv("GENZOO_EXTRACTORS_DIR", str(tmp_path / "extractors"))
    dm = Digits(batch_size=32, image_size=8)
    settings = dict(extractor="classifier:digits", metrics=("fid",), n_samples=40, n_reference=40, cache_dir=None)
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[Evaluation(**settings)])
    model = model_for(dm)
    with pytest.raises(FileNotFoundError, match="zoo train-extractor --data digits"):
        trainer.fit(model, dm)
    assert trainer.global_step == 0
    evaluation = Evaluation(**settings, train_missing_classifier=True)
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[evaluation])
    trainer.fit(model_for(dm), dm)
    assert (tmp_path / "extractors" / "digits.pt").is_file()
    assert evaluation.evaluator.feature_extractor.test_accuracy > 0.9
    assert len(evaluation.history) == 1 and evaluation.history[0]["fid"] > 0
