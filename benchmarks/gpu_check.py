"""The checks only a GPU can run, in one command (under 8 minutes on one GPU); the last stdout line is JSON.

    python -m benchmarks.gpu_check
    python -m benchmarks.gpu_check --device cpu --quick     # every section at toy sizes (what the tests run)

Sections (each key of the JSON; ``seconds`` says what each took):

- ``mixed_precision``: WGAN-GP's gradient penalty on one batch under ``16-mixed`` (fp16 autocast with the
  GradScaler's seed scale) and ``bf16-mixed`` against fp32, as relative errors; then ``--steps`` training steps of
  the CIFAR-10 config's WGAN-GP under each precision: steps the GradScaler skipped after ``--warmup`` steps
  (target 0) and whether the losses stayed finite.
- ``flatgan_autocast``: FlatGAN's generator tangents (forward mode) and critic loss under fp16 and bf16 autocast
  against fp32 (they are computed in fp32 inside autocast, so the errors should be ~0).
- ``images_per_s``: training throughput of WGAN-GP, OC-GAN (octave DCGAN) and FlexAE-SR at their CIFAR-10
  configs (bf16-mixed, synthetic images of the config's shape, so no data set is needed): eager, with
  ``compile: true`` and with channels_last memory format.
- ``ot``: ``benchmarks.ot_speed``'s Monte Carlo OT gradient against the bare GEMM of the same shapes
  (N = 10,000 codes, d = 64): ``fraction`` of the GEMM's throughput.
- ``evaluation_s``: the Evaluation callback's work (the Evaluator: sampling, Inception features, FID, KID,
  precision/recall, PRD) for 10,000 samples against 10,000 reference images. Without published Inception weights
  (``GENZOO_INCEPTION_WEIGHTS``) the network runs with random weights: the time is right, the values are not.

Without a CUDA device it exits with status 2 and says so (``--device cpu`` runs it on the CPU anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.step_speed import REPO, build_from_config, synchronize, time_zoo
from genzoo.datamodules.base import TensorDictDataset, ZooDataModule

THROUGHPUT_CONFIGS = {"wgan_gp": "wgan_gp/cifar10.yaml", "ocgan": "ocgan/dcgan_octave_cifar10.yaml",
                      "flexae_sr": "flexae_sr/cifar10.yaml"}
NO_GPU = ("benchmarks.gpu_check needs a CUDA GPU and found none (torch.cuda.is_available() is False); run it on a "
          "machine with one, or pass --device cpu to run every section on the CPU")


class RandomImages(ZooDataModule):
    """Uniform noise images in memory: throughput does not depend on the content. ``channels_last`` batches
    arrive in that memory format on the device."""

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float], num_samples: int,
                 batch_size: int, channels_last: bool = False) -> None:
        super().__init__(batch_size=batch_size, seed=0, value_range=tuple(value_range))
        self._shape, self.num_samples, self.channels_last = tuple(data_shape), num_samples, channels_last

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self._shape

    def build_datasets(self):
        low, high = self.value_range
        x = torch.rand(self.num_samples, *self._shape, generator=torch.Generator().manual_seed(0))
        dataset = TensorDictDataset(x=x * (high - low) + low)
        return dataset, None, None

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.channels_last:
            batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
        return batch


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).abs().max() / reference.float().abs().max().clamp_min(1e-12))


def mixed_precision(args, device: torch.device) -> dict:
    from genzoo.ops.losses import gradient_penalty

    model, _ = build_from_config(THROUGHPUT_CONFIGS["wgan_gp"], args.data_dir)
    model = model.to(device)
    real = torch.rand(args.batch, *model.data_shape, device=device) * 2 - 1
    with torch.no_grad():
        fake = model.generator(torch.randn(args.batch, model.latent_dim, device=device))
    alpha = torch.rand(args.batch, device=device)
    reference = gradient_penalty(model.critic, real, fake, alpha)
    result: dict = {"penalty_fp32": float(reference)}
    precisions = {"bf16-mixed": (torch.bfloat16, None)}
    if device.type == "cuda":
        precisions["16-mixed"] = (torch.float16, 2.0**16)  # the GradScaler's initial scale seeds the backward
    for name, (dtype, scale) in precisions.items():
        with torch.autocast(device.type, dtype=dtype):
            penalty = gradient_penalty(model.critic, real, fake, alpha, loss_scale=scale)
        result[f"penalty_rel_error_{name}"] = round(relative_error(penalty, reference), 5)
    for name in ["32-true", *precisions]:
        result[f"training_{name}"] = train_and_count_skips(args, device, name)
    if device.type != "cuda":
        result["16-mixed"] = "skipped: needs CUDA"
    return result


class LossScaleLog(L.Callback):
    """The GradScaler's scale after every step: each halving is a skipped (overflowing) step."""

    def __init__(self) -> None:
        self.scales: list[float | None] = []
        self.finite = True

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.scales.append(pl_module.loss_scale())
        self.finite &= all(bool(torch.isfinite(p).all()) for p in pl_module.critic.parameters())


def train_and_count_skips(args, device: torch.device, precision: str) -> dict:
    L.seed_everything(0, verbose=False)
    model, _ = build_from_config(THROUGHPUT_CONFIGS["wgan_gp"], args.data_dir)
    data = RandomImages(model.data_shape, model.value_range, args.batch * args.steps, args.batch)
    log = LossScaleLog()
    trainer = L.Trainer(accelerator=device.type, devices=1, max_epochs=1, limit_train_batches=args.steps,
                        precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[log], log_every_n_steps=1)
    trainer.fit(model, data)
    scales = [s for s in log.scales if s is not None]
    after = scales[args.warmup:]
    skipped = sum(later < earlier for earlier, later in zip(after, after[1:], strict=False))
    return {"steps": len(log.scales), "skipped_after_warmup": skipped if scales else None,
            "final_loss_scale": scales[-1] if scales else None, "finite": log.finite}


def flatgan_autocast(args, device: torch.device) -> dict:
    from genzoo.flatgan import FlatGAN

    torch.manual_seed(0)
    model = FlatGAN((1, 32, 32), k=2).to(device)
    z = model.sample_latents(args.batch, torch.Generator().manual_seed(0)).to(device)
    x = torch.rand(args.batch, 1, 32, 32, device=device) * 2 - 1
    real = {"x": x, "tangents": torch.randn(args.batch, 1, 32, 32, 2, device=device)}
    reference = model.push(model.generator, z)
    detached = {k: v.detach() for k, v in reference.items()}
    loss = model.critic_loss(real, detached, torch.Generator(device).manual_seed(0))
    result = {}
    dtypes = {"bf16": torch.bfloat16, **({"fp16": torch.float16} if device.type == "cuda" else {})}
    for name, dtype in dtypes.items():
        with torch.autocast(device.type, dtype=dtype):
            pushed = model.push(model.generator, z)
            terms = model.critic_loss(real, {k: v.detach() for k, v in pushed.items()},
                                      torch.Generator(device).manual_seed(0))
        result[name] = {"tangents_dtype": str(pushed["tangents"].dtype).removeprefix("torch."),
                        "tangents_rel_error": round(relative_error(pushed["tangents"], reference["tangents"]), 6),
                        "critic_loss_rel_error": round(relative_error(terms["loss"], loss["loss"]), 5),
                        "finite": bool(torch.isfinite(terms["loss"]))}
    return result


def images_per_s(args, device: torch.device) -> dict:
    results = {}
    compile_options = {"backend": "aot_eager"} if args.quick else True
    for name, config in THROUGHPUT_CONFIGS.items():
        results[name] = {}
        for variant in ("eager", "compile", "channels_last"):
            L.seed_everything(0, verbose=False)
            model, datamodule = build_from_config(config, args.data_dir,
                                                  compile=compile_options if variant == "compile" else False)
            batch = args.batch if args.quick else datamodule.batch_size
            data = RandomImages(model.data_shape, model.value_range, batch * args.throughput_batches, batch,
                                channels_last=variant == "channels_last")
            if variant == "channels_last":
                model = model.to(memory_format=torch.channels_last)
            try:
                rate = time_zoo(model, data, args.throughput_batches, args.throughput_warmup, "bf16-mixed")
                results[name][variant] = round(rate, 1)
            except Exception as error:  # report and go on: one failing variant must not hide the others
                results[name][variant] = f"failed: {type(error).__name__}: {str(error)[:200]}"
        results[name]["batch_size"] = batch
    return results


def ot_fraction(args, device: torch.device) -> dict:
    n, d = (500, 8) if args.quick else (10_000, 64)
    command = [sys.executable, "-m", "benchmarks.ot_speed", "--n", str(n), "--d", str(d), "--converge",
               "--device", device.type]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if run.returncode:
        return {"failed": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"}
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return {key: result[key] for key in ("n", "d", "fraction", "mc_gflops", "matmul_gflops", "peak_mb", "chunk_mb")
            if key in result}


def evaluation_seconds(args, device: torch.device) -> dict:
    from genzoo.evaluation import Evaluator
    from genzoo.evaluation.extractors.pretrained import save_random_inception_weights

    if not Path(os.environ.get("GENZOO_INCEPTION_WEIGHTS", "")).is_file():
        weights_file = save_random_inception_weights(Path(tempfile.mkdtemp()) / "inception.pth")
        os.environ["GENZOO_INCEPTION_WEIGHTS"] = str(weights_file)
        weights = "random (timing only)"
    else:
        weights = os.environ["GENZOO_INCEPTION_WEIGHTS"]
    model, _ = build_from_config(THROUGHPUT_CONFIGS["wgan_gp"], args.data_dir)
    model = model.to(device)
    n = 200 if args.quick else 10_000
    reference = RandomImages(model.data_shape, model.value_range, n, min(n, 250))
    evaluator = Evaluator(extractor="inception", n_samples=n, n_reference=n, reference_split="train",
                          batch_size=min(n, 250), cache_dir=tempfile.mkdtemp())
    synchronize()
    start = time.perf_counter()
    result = evaluator.evaluate(model, reference, device)
    synchronize()
    return {"seconds": round(time.perf_counter() - start, 2), "n_samples": n, "metrics": sorted(result.values),
            "inception_weights": weights}


SECTIONS = {"mixed_precision": mixed_precision, "flatgan_autocast": flatgan_autocast, "images_per_s": images_per_s,
            "ot": ot_fraction, "evaluation": evaluation_seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="toy sizes (a smoke test of every section)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {list(SECTIONS)}")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        print(json.dumps({"error": "no CUDA GPU"}))
        sys.exit(2)
    unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    args.batch = 4 if args.quick else 64
    args.steps, args.warmup = (6, 2) if args.quick else (200, 50)
    args.throughput_batches, args.throughput_warmup = (4, 2) if args.quick else (60, 20)
    device = torch.device(args.device)
    result: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "quick": args.quick, "seconds": {}}
    for name in args.sections.split(","):
        start = time.perf_counter()
        result[name] = SECTIONS[name](args, device)
        result["seconds"][name] = round(time.perf_counter() - start, 1)
        print(json.dumps({name: result[name]}), flush=True)
    result["seconds"]["total"] = round(sum(result["seconds"].values()), 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
