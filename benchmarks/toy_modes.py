"""Mode coverage of a 2-D toy run (PacGAN protocol, 2,500 samples): trains a config through the CLI for each
seed, then prints ``{"modes", "hq_fraction", "reverse_kl", ...}`` as the last line: the values of one seed, or
with several seeds their means, ``"std"`` and ``"per_seed"``. ``"targets_reverse_kl"`` is the KL of the
training points' own mode histogram (the floor for a model that reproduces its training set, e.g. AE-OT's map).

    python -m benchmarks.toy_modes --config configs/wgan_gp/grid25.yaml --seed 0
    python -m benchmarks.toy_modes --config configs/aeot/grid25.yaml --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from genzoo.callbacks.modes import grid_mode_metrics
from genzoo.cli import run_cli as cli_main

METRICS = ("modes", "hq_fraction", "reverse_kl")


def run(config: str, seed: int, extra: list[str]) -> dict:
    start = time.perf_counter()
    cli = cli_main(["fit", "--config", config, "--seed_everything", str(seed), "--data.seed", str(seed),
                    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                    "--trainer.default_root_dir", f"runs/benchmarks/toy_modes/{seed}", *extra])
    seconds = time.perf_counter() - start
    model, datamodule = cli.model, cli.datamodule
    torch.manual_seed(seed)
    samples = model.sample(2500)
    targets = torch.stack([datamodule.train_set[i]["x"] for i in range(len(datamodule.train_set))])
    return {**grid_mode_metrics(samples, datamodule.modes, datamodule.std),
            "targets_reverse_kl": grid_mode_metrics(targets, datamodule.modes, datamodule.std)["reverse_kl"],
            "seconds": round(seconds, 1), "progress": model.progress(), "seed": seed}


def summarise(runs: list[dict], config: str) -> dict:
    if len(runs) == 1:
        return {**runs[0], "config": config}
    keys = (*METRICS, "targets_reverse_kl")
    return {**{k: statistics.mean(r[k] for r in runs) for k in keys},
            "std": {k: statistics.stdev(r[k] for r in runs) for k in keys},
            "seeds": [r["seed"] for r in runs], "config": config, "per_seed": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/wgan_gp/grid25.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", help="several seeds: report means and stds")
    args, extra = parser.parse_known_args()
    runs = []
    for seed in args.seeds or [args.seed]:
        runs.append(run(args.config, seed, extra))
        print(json.dumps(runs[-1]), flush=True)
    print(json.dumps(summarise(runs, args.config)))


if __name__ == "__main__":
    main()
