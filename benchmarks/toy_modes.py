"""Mode coverage of a 2-D toy run (PacGAN protocol): trains a config through the CLI, then prints
``{"modes", "hq_fraction", "reverse_kl", "seconds", ...}`` as the last line.

    python -m benchmarks.toy_modes --config configs/wgan_gp/grid25.yaml --seed 0
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from callbacks.modes import ModeCoverage, grid_mode_metrics
from zoo.cli import run_cli as cli_main


def run(config: str, seed: int, extra: list[str]) -> dict:
    start = time.perf_counter()
    cli = cli_main(["fit", "--config", config, "--seed_everything", str(seed), "--trainer.logger", "false",
                    "--trainer.enable_progress_bar", "false",
                    "--trainer.default_root_dir", f"runs/benchmarks/toy_modes/{seed}", *extra])
    seconds = time.perf_counter() - start
    model, datamodule = cli.model, cli.datamodule
    coverage = next((c for c in cli.trainer.callbacks if isinstance(c, ModeCoverage)), None)
    torch.manual_seed(seed)
    samples = model.sample(2500)
    metrics = grid_mode_metrics(samples, datamodule.modes, datamodule.std)
    return {**metrics, "seconds": round(seconds, 1), "generator_steps": model.generator_step,
            "config": config, "seed": seed,
            "history": coverage.history if coverage is not None else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/wgan_gp/grid25.yaml")
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args()
    print(json.dumps(run(args.config, args.seed, extra)))


if __name__ == "__main__":
    main()
