"""OC-GAN's comparison: standard and octave DCGAN, LSGAN and WGAN trained with the same seed and budget, with
the FID (classifier extractor) after every epoch. The paper's claim: octave FID <= standard, and steadier.

    python -m benchmarks.ocgan_compare --data fashion_mnist --data_dir data --epochs 3 [--limit_batches 300]

Each run is ``zoo fit`` on ``configs/ocgan/<gan>_<conv>_<data>.yaml`` (nothing else changes between the two
variants than ``alpha``); ``--n_eval`` sets the generated/real sample counts of its Evaluation callback and
``--limit_batches`` caps the batches per epoch for CPU budgets. The last stdout line is JSON:
``{"<gan>_<conv>": {"fid": [per epoch], "final_fid", "seconds"}, ..., "settings": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from genzoo.cli import config_with_callback_args, run_cli

REPO = Path(__file__).resolve().parents[1]
GANS = ("dcgan", "lsgan", "wgan")


def run_config(config: Path, workdir: Path, args: argparse.Namespace) -> dict:
    prepared = config_with_callback_args(config, workdir, "genzoo.callbacks.Evaluation", n_samples=args.n_eval,
                                         n_reference=args.n_eval, kid_subset_size=min(1000, args.n_eval))
    start = time.perf_counter()
    run_cli(["fit", "--config", str(prepared), "--trainer.max_epochs", str(args.epochs),
             "--trainer.limit_train_batches", str(args.limit_batches or 1.0), "--trainer.logger", "false",
             "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(workdir),
             "--data.init_args.data_dir", args.data_dir])
    seconds = time.perf_counter() - start
    events = [json.loads(line) for line in (workdir / "evaluation.jsonl").read_text().splitlines()]
    fid = [round(e["fid"], 5) for e in events]
    return {"fid": fid, "final_fid": fid[-1], "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion_mnist", choices=["fashion_mnist", "cifar10", "celeba128"])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit_batches", type=int, default=None, help="batches per epoch (default: all)")
    parser.add_argument("--n_eval", type=int, default=10_000, help="generated and real samples per FID")
    parser.add_argument("--gans", default=",".join(GANS))
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for gan in args.gans.split(","):
            for conv in ("standard", "octave"):
                config = REPO / "configs" / "ocgan" / f"{gan}_{conv}_{args.data}.yaml"
                results[f"{gan}_{conv}"] = run_config(config, Path(scratch) / f"{gan}_{conv}", args)
                print(f"{gan}_{conv}: {results[f'{gan}_{conv}']}", flush=True)
    results["settings"] = {"data": args.data, "epochs": args.epochs, "limit_batches": args.limit_batches,
                           "n_eval": args.n_eval}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
