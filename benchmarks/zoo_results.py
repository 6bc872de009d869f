"""The zoo's results page: every method family trained on real images under one protocol and one budget.

    python -m benchmarks.zoo_results --data fashion_mnist --budget 300 --data_dir ../shared/data
    python -m benchmarks.zoo_results --data digits --budget 20            # the same in minutes
    python -m benchmarks.zoo_results --data fashion_mnist --budget 2000 --unit steps --models wgan_gp,dcgan_standard

Each model is ``zoo fit`` on its own ``configs/<method>/<data>.yaml`` changed only in budget (and in what a
benchmark must not pay for: loggers, sample grids and the configs' own evaluation callbacks are left out):

- ``--unit seconds`` (default): the same wall-clock seconds of training per model, measured inside the run from
  the first batch (data loading included, this benchmark's own evaluations excluded). AE-OT's semi-discrete OT
  solve is part of its training: its autoencoder stops at ``(1 - aeot_ot_share)`` of the budget and the map is
  solved to ``--aeot_targets`` training codes in what is left (the row's seconds say what it really took).
- ``--unit steps``: the same number of the paper's steps (generator steps; outer steps for autoencoders).

Protocol: ``n_eval`` generated samples against the same number of real test images (digits: 1,000 against the
1,497 training images), features of the data's classifier extractor; FID, KID, improved precision/recall and PRD
F8/F1/8 at the end, FID alone at 1/4, 1/2 and 3/4 of the budget. Every model is evaluated at the data's native
size in [-1, 1]: samples of models trained at another size (OC-GAN and FlatGAN train Fashion-MNIST at 32 px) are
resized with antialiasing first; the ``resize_floor`` baseline measures what that alone costs. Baselines: a
per-pixel Gaussian fitted to the training set (mean and full covariance), and real training images (the floor).

Outputs in ``--out`` (default ``benchmarks/results/<data>-<budget><s|steps>``): ``results.json``,
``results.md`` (the table and the papers' orderings), ``fid_vs_time.png``, ``samples.png`` (one row per model)
and ``models/<name>.json`` / ``.png`` per finished model: a finished model is not retrained (``--force`` does),
so the table can be built across sittings. Checkpoints go to ``runs/zoo_results/``. The last stdout line is
the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import lightning as L
import torch
import torch.nn.functional as F
import yaml

from genzoo.datamodules import build_datamodule
from genzoo.evaluation import Evaluator

REPO = Path(__file__).resolve().parents[1]

#: model name -> config path (``{data}`` is the data set); the octave/standard pairs share one architecture
MODELS = {
    "wgan": "wgan/{data}.yaml",
    "wgan_gp": "wgan_gp/{data}.yaml",
    "dcgan_standard": "ocgan/dcgan_standard_{data}.yaml",
    "dcgan_octave": "ocgan/dcgan_octave_{data}.yaml",
    "lsgan_standard": "ocgan/lsgan_standard_{data}.yaml",
    "lsgan_octave": "ocgan/lsgan_octave_{data}.yaml",
    "wgan_standard": "ocgan/wgan_standard_{data}.yaml",
    "wgan_octave": "ocgan/wgan_octave_{data}.yaml",
    "wae_gan": "wae_gan/{data}.yaml",
    "wae_mmd": "wae_mmd/{data}.yaml",
    "flexae": "flexae/{data}.yaml",
    "flexae_sr": "flexae_sr/{data}.yaml",
    "aeot": "aeot/{data}.yaml",
    "flatgan": "flatgan/{data}.yaml",
}

#: the papers' claims at equal budget: (better, worse, source); "better" means lower FID
ORDERINGS = [
    ("flexae_sr", "flexae", "FlexAE Table 1"),
    ("flexae", "wae_gan", "FlexAE Table 1"),
    ("flexae", "wae_mmd", "FlexAE Table 1"),
    ("dcgan_octave", "dcgan_standard", "OC-GAN Figs. 2/6"),
    ("lsgan_octave", "lsgan_standard", "OC-GAN Figs. 2/6"),
    ("wgan_octave", "wgan_standard", "OC-GAN Figs. 2/6"),
    ("aeot", "wgan", "AE-OT Tables 3/4"),
    ("aeot", "wgan_gp", "AE-OT Tables 3/4"),
    ("aeot", "dcgan_standard", "AE-OT Tables 3/4"),
    ("aeot", "lsgan_standard", "AE-OT Tables 3/4"),
]


@dataclass(frozen=True)
class Protocol:
    """How one data set is evaluated."""

    extractor: str
    reference_split: str
    n_eval: int
    n_reference: int | None
    image_size: int

    def describe(self, data: str) -> str:
        real = f"{self.n_reference or 'all'} {self.reference_split} images"
        return (f"{data}: {self.n_eval} samples vs {real}, {self.extractor} features, {self.image_size} px in "
                f"[-1, 1] (other sizes resized with antialiasing)")


PROTOCOLS = {
    "fashion_mnist": Protocol("classifier:fashion_mnist", "test", 10_000, 10_000, 28),
    "digits": Protocol("classifier:digits", "train", 1_000, None, 8),
}
FINAL_METRICS = ("fid", "kid", "precision_recall", "prd")
EVALUATION_ONLY_CALLBACKS = {"genzoo.callbacks.Evaluation", "genzoo.callbacks.SampleGrid",
                             "genzoo.callbacks.LatentInterpolation",
                             "genzoo.callbacks.NearestNeighbours", "genzoo.callbacks.LatentTraversal",
                             "genzoo.callbacks.EquivarianceScore", "genzoo.callbacks.ModeCoverage"}
MONTAGE_SAMPLES = 12


# ------------------------------------------------------------------------------------- evaluated models

class AtEvaluationSize:
    """A model's samples at the protocol's size and in [-1, 1], for :class:`Evaluator` (which only needs
    ``sample_latents``, ``generate``, ``value_range`` and ``device``)."""

    value_range = (-1.0, 1.0)

    def __init__(self, model: Any, size: int) -> None:
        self.model, self.size = model, size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def sampling_network(self) -> Any:
        return getattr(self.model, "sampling_network", None)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.model.sample_latents(n, generator=generator)

    def generate(self, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return to_evaluation_size(self.model.generate(z, batch_size), self.model.value_range, self.size)


def to_evaluation_size(x: torch.Tensor, value_range: tuple[float, float], size: int) -> torch.Tensor:
    low, high = value_range
    x = (x.float() - low) / (high - low) * 2 - 1
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1)


class ImagesBaseline:
    """Real images as a "model": latents are indices (the training-set floor, the resize floor)."""

    value_range = (-1.0, 1.0)
    device = torch.device("cpu")

    def __init__(self, images: torch.Tensor, value_range: tuple[float, float], size: int) -> None:
        self.images = to_evaluation_size(images, value_range, size)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if n > len(self.images):
            raise ValueError(f"asked for {n} real images, there are {len(self.images)}")
        return torch.randperm(len(self.images), generator=generator)[:n].unsqueeze(1).float()

    def generate(self, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return self.images[z.squeeze(1).long()]


class GaussianBaseline:
    """A per-pixel Gaussian fitted to the training images: mean and full covariance, samples clamped to the
    value range (as any image would be)."""

    value_range = (-1.0, 1.0)
    device = torch.device("cpu")

    def __init__(self, images: torch.Tensor, value_range: tuple[float, float], size: int) -> None:
        x = to_evaluation_size(images, value_range, size).flatten(1).double()
        self.shape = (*images.shape[1:-2], size, size)
        self.mean = x.mean(0)
        covariance = torch.cov(x.T)
        jitter = 1e-6 * covariance.diagonal().mean()
        self.factor = torch.linalg.cholesky(covariance + jitter * torch.eye(len(covariance), dtype=x.dtype))

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)

    def generate(self, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        x = self.mean + z.double() @ self.factor.T
        return x.float().clamp(-1, 1).reshape(len(z), *self.shape)


# ------------------------------------------------------------------------------------------ the budget

class TrainingBudget(L.Callback):
    """Stops ``fit`` once ``seconds`` of training (wall clock from the first batch, this callback's own
    evaluations excluded) or ``steps`` of the model's progress counter (generator or outer steps) are spent,
    and calls ``evaluate(model)`` (FID) at ``1/points, 2/points, ...`` of the budget (the last one is the
    caller's). Records the curve, the steps, the samples seen and the seconds."""

    def __init__(self, seconds: float | None = None, steps: int | None = None, points: int = 4,
                 evaluate: Any = None) -> None:
        if (seconds is None) == (steps is None):
            raise ValueError("give a budget in seconds or in steps, not both")
        self.seconds, self.steps, self.points, self.evaluate = seconds, steps, points, evaluate
        self.curve: list[dict[str, float]] = []
        self.samples_seen = 0
        self.train_seconds = 0.0
        self._start = self._paused = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._paused = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self._start - self._paused

    def fraction(self, pl_module: L.LightningModule) -> float:
        if self.seconds is not None:
            return self.elapsed() / self.seconds
        return progress_steps(pl_module) / self.steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self.samples_seen += len(batch["x"]) if isinstance(batch, dict) else len(batch)
        fraction = self.fraction(pl_module)
        if fraction >= 1:
            self.train_seconds = self.elapsed()
            trainer.should_stop = True
            return
        done = len(self.curve) + 1
        if self.evaluate is not None and done < self.points and fraction >= done / self.points:
            seconds, paused_at = self.elapsed(), time.perf_counter()
            fid = self.evaluate(pl_module) if getattr(pl_module, "ready_to_sample", True) else None
            self.curve.append({"seconds": round(seconds, 2), "steps": progress_steps(pl_module), "fid": fid})
            self._paused += time.perf_counter() - paused_at

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.train_seconds:  # the config's own limit came first
            self.train_seconds = self.elapsed()


def progress_steps(model: Any) -> int:
    """The paper's unit: generator steps of adversarial models, outer steps of autoencoders."""
    for name in ("generator_step", "outer_step"):
        if hasattr(model, name):
            return int(getattr(model, name))
    raise TypeError(f"{type(model).__name__} has neither generator_step nor outer_step")


# ------------------------------------------------------------------------------------------- one model

def prepared_config(name: str, data: str, data_dir: str, run_dir: Path, args: argparse.Namespace) -> Path:
    """The model's config with what a benchmark must not pay for removed, written into ``run_dir``."""
    content = yaml.safe_load(config_path(name, data).read_text())
    trainer = content.setdefault("trainer", {})
    trainer["callbacks"] = [c for c in trainer.get("callbacks", []) or []
                            if c.get("class_path") not in EVALUATION_ONLY_CALLBACKS]
    trainer.update(logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=str(run_dir))
    set_data_dir(content["data"], data_dir)
    if name == "aeot" and args.aeot_targets:
        content["model"]["init_args"]["transport_samples"] = args.aeot_targets
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def set_data_dir(node: Any, data_dir: str) -> None:
    """Point every ``data_dir`` in the data section (wrapped datamodules included) at ``data_dir``."""
    if isinstance(node, dict):
        if "data_dir" in node:
            node["data_dir"] = data_dir
        for value in node.values():
            set_data_dir(value, data_dir)
    elif isinstance(node, list):
        for value in node:
            set_data_dir(value, data_dir)


def config_path(name: str, data: str) -> Path:
    return REPO / "configs" / MODELS[name].format(data=data)


def train_and_evaluate(name: str, args: argparse.Namespace, reference: L.LightningDataModule,
                       evaluator: Evaluator, fid_evaluator: Evaluator, run_root: Path) -> dict[str, Any]:
    from genzoo.cli import run_cli

    protocol = PROTOCOLS[args.data]
    run_dir = run_root / name
    config = prepared_config(name, args.data, args.data_dir, run_dir, args)
    with mock.patch.object(sys, "argv", sys.argv[:1]):  # LightningCLI would warn about our own arguments
        cli = run_cli(["--config", str(config)], run=False)
    model, trainer, datamodule = cli.model, cli.trainer, cli.datamodule

    def fid_now(module: Any) -> float:
        return round(fid_evaluator.evaluate(AtEvaluationSize(module, protocol.image_size), reference,
                                            torch.device("cpu")).values["fid"], 4)

    seconds = args.budget if args.unit == "seconds" else None
    if name == "aeot" and seconds is not None:
        seconds *= 1 - args.aeot_ot_share  # the rest is the OT solve's
    budget = TrainingBudget(seconds=seconds, steps=None if seconds else int(args.budget), evaluate=fid_now)
    trainer.callbacks.append(budget)
    L.seed_everything(0, workers=True)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    total_seconds = time.perf_counter() - start - budget._paused
    model.eval()
    result = evaluator.evaluate(AtEvaluationSize(model, protocol.image_size), reference, torch.device("cpu"))
    values = {k: round(v, 6) for k, v in result.values.items()}
    curve = budget.curve + [{"seconds": round(total_seconds, 2), "steps": progress_steps(model),
                             "fid": round(values["fid"], 4)}]
    save_sample_row(AtEvaluationSize(model, protocol.image_size), args.out / "models" / f"{name}.png")
    return {"model": name, "config": str(config_path(name, args.data).relative_to(REPO)),
            "class": f"{type(model).__module__}.{type(model).__qualname__}", **values,
            "steps": progress_steps(model), "train_seconds": round(budget.train_seconds, 1),
            "seconds": round(total_seconds, 1), "samples_per_s": round(budget.samples_seen / total_seconds, 1),
            "curve": curve, "budget": args.budget, "unit": args.unit, "protocol": result.protocol,
            "checkpoint": str(run_dir / "checkpoints" / "last.ckpt")}


def evaluate_baselines(args: argparse.Namespace, reference: L.LightningDataModule,
                       evaluator: Evaluator) -> dict[str, dict[str, float]]:
    protocol = PROTOCOLS[args.data]
    train = stack_split(reference, "train")
    baselines = {"gaussian": GaussianBaseline(train, reference.value_range, protocol.image_size),
                 "train_images": ImagesBaseline(train, reference.value_range, protocol.image_size)}
    if args.data == "fashion_mnist":  # what resizing 32 px models' samples costs: 28 -> 32 -> 28 px
        resized = reference_datamodule(args.data, args.data_dir, image_size=32)
        baselines["resize_floor"] = ImagesBaseline(stack_split(resized, "train"), resized.value_range,
                                                   protocol.image_size)
    results = {}
    for name, baseline in baselines.items():
        if args.data != "fashion_mnist" and name == "train_images" and protocol.reference_split == "train":
            continue  # the reference itself: no floor to measure
        result = evaluator.evaluate(baseline, reference, torch.device("cpu"))
        results[name] = {k: round(v, 6) for k, v in result.values.items()}
        save_sample_row(baseline, args.out / "models" / f"baseline_{name}.png")
        print(f"baseline {name}: {json.dumps(results[name])}", flush=True)
    return results


def reference_datamodule(data: str, data_dir: str, **settings) -> L.LightningDataModule:
    """The data the configs train on (Fashion-MNIST: the whole 60k training split, as they set val_size 0)."""
    if data == "fashion_mnist":
        settings["val_size"] = 0
    return build_datamodule(data, data_dir=data_dir, value_range=(-1.0, 1.0), **settings)


def stack_split(datamodule: L.LightningDataModule, split: str) -> torch.Tensor:
    from genzoo.evaluation.features import datamodule_split

    dataset = datamodule_split(datamodule, split)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2000)
    return torch.cat([b["x"] if isinstance(b, dict) else b for b in loader])


def save_sample_row(model: Any, path: Path) -> None:
    from torchvision.utils import save_image

    z = model.sample_latents(MONTAGE_SAMPLES, generator=torch.Generator().manual_seed(1))
    x = model.generate(z).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((x + 1) / 2, path, nrow=MONTAGE_SAMPLES, padding=1, pad_value=1.0)


# ---------------------------------------------------------------------------------------------- outputs

def orderings(results: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for better, worse, source in ORDERINGS:
        if better in results and worse in results:
            a, b = results[better]["fid"], results[worse]["fid"]
            rows.append({"claim": f"{better} <= {worse}", "source": source, "fid": [a, b], "holds": a <= b})
    return rows


def markdown_table(results: dict[str, dict], baselines: dict[str, dict], summary: dict[str, Any]) -> str:
    lines = [f"Protocol: {summary['protocol']}. Budget: {summary['budget']} {summary['unit']} per model.", "",
             "| model | FID | KID x 1e3 | precision | recall | PRD F8 | PRD F1/8 | steps | samples/s | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.items(), key=lambda item: item[1]["fid"]):
        lines.append(f"| {name} | {r['fid']:.2f} | {1e3 * r['kid']:.2f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['prd_f8']:.3f} | {r['prd_f1_8']:.3f} | {r['steps']} | "
                     f"{r['samples_per_s']:.0f} | {r['seconds']:.0f} |")
    for name, r in baselines.items():
        lines.append(f"| *baseline: {name}* | {r['fid']:.2f} | {1e3 * r['kid']:.2f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['prd_f8']:.3f} | {r['prd_f1_8']:.3f} | | | |")
    lines += ["", "| the papers' claim (lower FID first) | source | FIDs | holds |", "|---|---|---|---|"]
    for row in summary["orderings"]:
        lines.append(f"| {row['claim']} | {row['source']} | {row['fid'][0]:.2f} vs {row['fid'][1]:.2f} | "
                     f"{'yes' if row['holds'] else '**no**'} |")
    if summary["worse_than_gaussian"]:
        lines += ["", f"Worse than the per-pixel Gaussian: {', '.join(summary['worse_than_gaussian'])}."]
    return "\n".join(lines) + "\n"


def plot_curves(results: dict[str, dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=110)
    ax = fig.add_subplot()
    for name, r in sorted(results.items()):
        points = [(p["seconds"], p["fid"]) for p in r["curve"] if p["fid"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set(xlabel="training seconds (wall clock, 2 CPU cores)", ylabel="FID (log scale)", yscale="log",
           title="FID during training")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)


def montage(names: list[str], directory: Path, path: Path) -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    rows = [(name, directory / f"{name}.png") for name in names if (directory / f"{name}.png").is_file()]
    if not rows:
        return
    fig = Figure(figsize=(9, 0.62 * len(rows) + 0.2), dpi=110)
    for i, (name, row_path) in enumerate(rows):
        ax = fig.add_axes((0.2, 1 - (i + 1) / len(rows), 0.79, 1 / len(rows) * 0.95))
        ax.imshow(Image.open(row_path).convert("L"), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_axis_off()
        fig.text(0.19, 1 - (i + 0.5) / len(rows), name, ha="right", va="center", fontsize=8)
    fig.savefig(path)


# ------------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion_mnist", help=f"one of {sorted(PROTOCOLS)}")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--budget", type=float, default=300.0, help="per model, in --unit")
    parser.add_argument("--unit", default="seconds", choices=["seconds", "steps"])
    parser.add_argument("--models", default=None, help="comma-separated (default: every model with a config)")
    parser.add_argument("--n_eval", type=int, default=None, help="generated (and real) samples per evaluation")
    parser.add_argument("--aeot_targets", type=int, default=2000,
                        help="training codes AE-OT's OT map is solved to (its solve is part of the budget)")
    parser.add_argument("--aeot_ot_share", type=float, default=0.2,
                        help="share of a seconds budget AE-OT keeps for its OT solve")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/<data>-<budget>)")
    parser.add_argument("--runs", default="runs/zoo_results", help="where checkpoints go")
    parser.add_argument("--force", action="store_true", help="retrain models that already have results")
    args = parser.parse_args(argv)
    if args.data not in PROTOCOLS:
        parser.error(f"--data {args.data!r} has no results protocol; choose from {sorted(PROTOCOLS)}")
    if not math.isfinite(args.budget) or args.budget <= 0:
        parser.error(f"--budget must be a positive number of {args.unit}, got {args.budget}")
    if args.unit == "steps" and args.budget != int(args.budget):
        parser.error(f"a budget in steps must be a whole number, got {args.budget}")
    if not 0 <= args.aeot_ot_share < 1:
        parser.error(f"--aeot_ot_share must be in [0, 1), got {args.aeot_ot_share}")
    available = [m for m in MODELS if config_path(m, args.data).is_file()]
    if args.models is None:
        args.models = available
    else:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.models if m not in MODELS]
        if unknown:
            parser.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")
        missing = [str(config_path(m, args.data).relative_to(REPO)) for m in args.models if m not in available]
        if missing:
            parser.error(f"no config for --data {args.data}: {missing} do not exist")
    if not args.models:
        parser.error(f"no model has a config for --data {args.data}")
    tag = f"{args.budget:g}{'s' if args.unit == 'seconds' else 'steps'}"
    args.out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"{args.data}-{tag}"
    args.runs = Path(args.runs) / f"{args.data}-{tag}"
    return args


def build_evaluators(args: argparse.Namespace) -> tuple[Evaluator, Evaluator]:
    protocol = PROTOCOLS[args.data]
    n_eval = args.n_eval or protocol.n_eval
    n_reference = min(n_eval, protocol.n_reference) if protocol.n_reference else None
    common = dict(extractor=protocol.extractor, n_samples=n_eval, reference_split=protocol.reference_split,
                  n_reference=n_reference, seed=0)
    return Evaluator(metrics=FINAL_METRICS, **common), Evaluator(metrics=("fid",), **common)


def ensure_extractor(evaluator: Evaluator, reference: L.LightningDataModule) -> None:
    """Train the data's classifier extractor on first use (as the configs' Evaluation callbacks do)."""
    from genzoo.evaluation.extractors.classifier import resolve_checkpoint, save_classifier, train_classifier

    try:
        evaluator.feature_extractor  # noqa: B018
    except FileNotFoundError:
        name = evaluator.extractor.partition(":")[2]
        net, accuracy = train_classifier(reference, device="cpu")
        save_classifier(resolve_checkpoint(name), net, name, accuracy)
        print(f"trained the {name} classifier extractor (test accuracy {accuracy:.4f})", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    protocol = PROTOCOLS[args.data]
    reference = reference_datamodule(args.data, args.data_dir)
    evaluator, fid_evaluator = build_evaluators(args)
    ensure_extractor(evaluator, reference)
    (args.out / "models").mkdir(parents=True, exist_ok=True)

    results = {}
    for name in args.models:
        path = args.out / "models" / f"{name}.json"
        if path.is_file() and not args.force:
            results[name] = json.loads(path.read_text())
            print(f"{name}: kept from {path}", flush=True)
            continue
        print(f"{name}: training for {args.budget:g} {args.unit}", flush=True)
        results[name] = train_and_evaluate(name, args, reference, evaluator, fid_evaluator, args.runs)
        path.write_text(json.dumps(results[name], indent=1))
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k not in ('curve', 'protocol')})}",
              flush=True)
    # every finished model in the folder, also those of earlier sittings with another --models
    for path in sorted((args.out / "models").glob("*.json")):
        if not path.stem.startswith("baseline") and path.stem not in results:
            results[path.stem] = json.loads(path.read_text())

    baselines_path = args.out / "models" / "baselines.json"
    if baselines_path.is_file() and not args.force:
        baselines = json.loads(baselines_path.read_text())
    else:
        baselines = evaluate_baselines(args, reference, evaluator)
        baselines_path.write_text(json.dumps(baselines, indent=1))

    ordered = [m for m in MODELS if m in results]
    summary = {
        "protocol": protocol.describe(args.data) if args.n_eval is None else
        protocol.describe(args.data).replace(str(protocol.n_eval), str(args.n_eval), 1),
        "budget": args.budget, "unit": args.unit,
        "total_seconds": round(sum(r["seconds"] for r in results.values()), 1),
        "fid": {m: results[m]["fid"] for m in ordered},
        "baselines": {k: v["fid"] for k, v in baselines.items()},
        "worse_than_gaussian": [m for m in ordered if results[m]["fid"] >= baselines["gaussian"]["fid"]],
        "orderings": orderings(results),
    }
    (args.out / "results.json").write_text(json.dumps({"summary": summary, "models": results,
                                                       "baselines": baselines}, indent=1))
    (args.out / "results.md").write_text(markdown_table(results, baselines, summary))
    plot_curves(results, args.out / "fid_vs_time.png")
    montage(ordered + [f"baseline_{b}" for b in baselines], args.out / "models", args.out / "samples.png")
    line = {k: summary[k] for k in ("budget", "unit", "total_seconds", "fid", "baselines", "worse_than_gaussian")}
    line["orderings"] = {row["claim"]: row["holds"] for row in summary["orderings"]}
    print(json.dumps(line))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
