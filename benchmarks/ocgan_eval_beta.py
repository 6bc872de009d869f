"""OC-GAN checkpoints of ``benchmarks.zoo_results`` read two ways: sampled with the authors' evaluation β
(0.7 / 0.3, what the results table uses) and with the β they were trained at when the budget stopped them.

    python -m benchmarks.ocgan_eval_beta --results fashion_mnist-240s --models dcgan_octave,lsgan_octave

Same protocol as the table (``zoo_results.PROTOCOLS``: FID at the data's size in the classifier's features);
the last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks import zoo_results
from genzoo.commands import load_model
from genzoo.nets.octave import OctaveNormAct


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="fashion_mnist-240s", help="a zoo_results run: <data>-<budget>")
    parser.add_argument("--models", default="dcgan_octave,lsgan_octave,wgan_octave")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--runs", default="runs/zoo_results")
    parser.add_argument("--n_eval", type=int, default=None, help="generated (and real) samples")
    args = parser.parse_args(argv)
    data = args.results.rpartition("-")[0]
    if data not in zoo_results.PROTOCOLS:
        parser.error(f"--results {args.results!r} names no data set with a protocol ({sorted(zoo_results.PROTOCOLS)})")
    protocol = zoo_results.PROTOCOLS[data]
    reference = zoo_results.reference_datamodule(data, args.data_dir)
    _, fid_evaluator = zoo_results.build_evaluators(argparse.Namespace(data=data, n_eval=args.n_eval))
    zoo_results.ensure_extractor(fid_evaluator, reference)

    def fid(model) -> float:
        adapted = zoo_results.AtEvaluationSize(model, protocol.image_size)
        return round(fid_evaluator.evaluate(adapted, reference, torch.device("cpu")).values["fid"], 6)

    summary = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        checkpoint = Path(args.runs) / args.results / name / "checkpoints" / "last.ckpt"
        model = load_model(str(checkpoint), None, "cpu")
        blocks = [m for m in model.generator.modules() if isinstance(m, OctaveNormAct) and m.has_eval_beta]
        if not blocks:
            parser.error(f"{checkpoint}: its generator has no eval_beta, so both readings are the same")
        with_eval_beta = fid(model)
        for block in blocks:
            block.sample_with_training_beta()
        summary[name] = {"training_beta": [round(float(blocks[0].beta_high), 4), round(float(blocks[0].beta_low), 4)],
                         "fid_eval_beta": with_eval_beta, "fid_training_beta": fid(model)}
        print(f"{name}: {json.dumps(summary[name])}", flush=True)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
