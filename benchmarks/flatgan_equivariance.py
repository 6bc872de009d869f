"""Equivariance after a fixed budget: FlatGAN (``configs/flatgan/<data>.yaml``) against a WGAN-GP that starts
from the same generator (a copy of FlatGAN's initial one), draws the same latents (the first k coordinates
uniform, the rest N(0, 1)) and uses FlatGAN's 0-form network as its critic, so that the two differ in the
objective only: WGAN-GP's first k latent coordinates carry no meaning it was asked for.

The score (``genzoo.callbacks.flat.equivariance_score``) compares each generator's tangent k-plane span{∇_z g·e_i}
at generated images with the plane of the named transformations' tangents computed on those images: the mean
cosine of the principal angles (1 = the same plane), and the per-direction signed cosines. The last line is
JSON: ``{"flatgan", "wgan_gp", "flatgan_per_direction", "wgan_gp_per_direction", ...}``.

    python -m benchmarks.flatgan_equivariance --data fashion_mnist
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from genzoo.callbacks.flat import equivariance_score
from genzoo.cli import run_cli
from genzoo.wgan import WGANGP

REPO = Path(__file__).resolve().parents[1]


class SameLatentsWGANGP(WGANGP):
    """WGAN-GP drawing its latents from FlatGAN's latent current (uniform oriented coordinates)."""

    def __init__(self, latent_current, **kwargs) -> None:
        super().__init__(**kwargs)
        self.latent_current = latent_current

    def sample_latents(self, n, generator=None):
        return self.latent_current.sample(n, generator).to(self.device)

    def fake_batch(self, n, generator):
        return {"x": self.generator(self.latent_current.sample(n, generator, self.device))}


def twin_wgan_gp(flatgan, **settings) -> SameLatentsWGANGP:
    """A WGAN-GP with copies of FlatGAN's generator and 0-form network, drawing FlatGAN's latents."""
    return SameLatentsWGANGP(flatgan.latent_current, data_shape=flatgan.data_shape, value_range=flatgan.value_range,
                             latent_dim=flatgan.latent_dim, generator=lambda *a: copy.deepcopy(flatgan.generator),
                             critic=lambda *a: copy.deepcopy(flatgan.critic.zero_form), **settings)


def build(data: str, data_dir: str, generator_steps: int, width_scale: float, directory: Path,
          overrides: list[str]):
    config = REPO / "configs" / "flatgan" / f"{data}.yaml"
    args = ["--config", str(config), "--trainer.logger", "false", "--trainer.callbacks", "[]",
            "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(directory),
            "--trainer.devices", "1",
            "--model.init_args.max_generator_steps", str(generator_steps), *overrides]
    if "fashion" in data:
        args += ["--data.init_args.base.init_args.data_dir", data_dir]
    if width_scale != 1.0:
        import yaml

        nets = yaml.safe_load(config.read_text())["model"]["init_args"]
        for name in ("generator", "zero_form", "one_form"):
            width = nets[name]["init_args"]["width"]
            args += [f"--model.init_args.{name}.init_args.width", str(max(1, round(width * width_scale)))]
    return run_cli(args, run=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist", choices=["fashion_mnist", "fashion_mnist_k3", "digits"])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--generator-steps", type=int, default=1000)
    parser.add_argument("--width-scale", type=float, default=0.25, help="network widths relative to the config")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=None, help="FlatGAN's k-form scale (default: the config's)")
    parser.add_argument("--only-flatgan", action="store_true", help="skip the baseline (for tuning)")
    args = parser.parse_args()
    overrides = [] if args.alpha is None else ["--model.init_args.alpha", str(args.alpha)]
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        L.seed_everything(args.seed)
        cli = build(args.data, args.data_dir, args.generator_steps, args.width_scale, Path(tmp), overrides)
        flatgan, datamodule = cli.model, cli.datamodule
        baseline = twin_wgan_gp(flatgan, max_generator_steps=args.generator_steps)
        z = flatgan.sample_latents(args.samples, torch.Generator().manual_seed(args.seed + 1))
        runs = [("flatgan", flatgan, cli.trainer), ("wgan_gp", baseline, baseline_trainer(tmp))]
        for name, model, trainer in runs[:1] if args.only_flatgan else runs:
            start = time.perf_counter()
            trainer.fit(model, datamodule)
            score = equivariance_score(model.generator, z.to(model.device), flatgan.k, datamodule.tangents_at)
            result[name] = round(score["score"], 4)
            result[f"{name}_per_direction"] = [round(c, 4) for c in score["per_direction"]]
            result[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
            print(name, score, flush=True)
    result.update(data=args.data, k=flatgan.k, alpha=flatgan.critic.alpha, generator_steps=args.generator_steps,
                  width_scale=args.width_scale, transformations=list(datamodule.transformations),
                  samples=args.samples, seed=args.seed)
    print(json.dumps(result))


def baseline_trainer(root: str) -> L.Trainer:
    return L.Trainer(accelerator="auto", devices=1, max_epochs=-1, max_steps=-1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=root)


if __name__ == "__main__":
    main()
