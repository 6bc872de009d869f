"""The FlexAE paper's synthetic experiment (Sec. 4.1, Fig. 2): data on a 5-D manifold in R^128, an autoencoder
with a larger latent space (m = 50), and the question whether decoding prior samples gives data.

    python -m benchmarks.flexae_synthetic --m 50 --seed 0 [--latent gaussian|mixture] [--outer_steps 3000]

Two models with the same networks, optimizers, critic and budget (outer steps), differing only in the prior:

- ``wae``: N(0, I_m) fixed; the encoder is pulled toward it by the WGAN-GP latent critic (the paper's WAE with a
  Wasserstein adversary; ``FlexAE(learned_prior=False)``).
- ``flexae``: the learned prior P-GEN (m' = m).

Reported per model:
- ``latent_w1``: the Wasserstein-1 distance between prior samples and the aggregate posterior (codes of held-out
  data), **sample-based**: the exact optimal-transport cost between ``--n_w1`` points of each (an assignment
  problem, scipy's ``linear_sum_assignment``), at the end; ``latent_w1_curve`` has it every tenth of training, and
  ``critic_w1`` the latent critic's own estimate (its Wasserstein term, mean of the last 50 logged values).
- ``fd``: the Fréchet distance between ``--n_eval`` generated and ``--n_eval`` held-out true 128-d vectors (raw
  coordinates, no feature network), and ``fd_reconstruction`` for reconstructions of the held-out set.
Target (the paper's Fig. 2): FlexAE's generation FD well below WAE's, at most half. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time

import lightning as L
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from genzoo.datamodules import LatentManifold
from genzoo.evaluation.metrics import frechet_distance
from genzoo.flexae import FlexAE
from genzoo.nets import MLPCritic, MLPEncoder, MLPGenerator


def sample_w1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact W1 between two equal-sized point clouds (uniform weights): the optimal assignment's mean cost."""
    cost = torch.cdist(a.double(), b.double()).numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


class LatentDistance(L.Callback):
    """Records the sample-based latent W1 every ``every`` outer steps and the critic's Wasserstein term."""

    def __init__(self, held_out: torch.Tensor, every: int, n: int) -> None:
        self.held_out, self.every, self.n = held_out[:n], every, n
        self.curve: list[tuple[int, float]] = []
        self.critic: list[float] = []
        self._last = -1

    def measure(self, model: FlexAE) -> float:
        codes = model.encode(self.held_out).cpu()
        prior = model.sample_latents(self.n, generator=torch.Generator().manual_seed(1)).cpu()
        return sample_w1(codes, prior)

    def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx) -> None:
        value = trainer.callback_metrics.get("train/latent_wasserstein")
        if value is not None and model.cycle_position == 0:
            self.critic.append(float(value))
        if model.outer_step % self.every == 0 and model.outer_step != self._last and model.cycle_position == 0:
            self._last = model.outer_step
            self.curve.append((model.outer_step, round(self.measure(model), 4)))


def build(m: int, learned_prior: bool, width: int, outer_steps: int) -> FlexAE:
    return FlexAE((128,), (float("-inf"), float("inf")), latent_dim=m, learned_prior=learned_prior,
                  max_outer_steps=outer_steps,
                  encoder=functools.partial(MLPEncoder, width=width, depth=3),
                  decoder=functools.partial(MLPGenerator, width=width, depth=3),
                  prior_network=functools.partial(MLPGenerator, width=width, depth=4),
                  latent_critic=functools.partial(MLPCritic, width=width, depth=4))


def run(name: str, learned_prior: bool, args: argparse.Namespace) -> dict:
    L.seed_everything(args.seed, verbose=False)
    data = LatentManifold(latent=args.latent, map_seed=args.seed, seed=args.seed, num_samples=args.n_train,
                          num_test_samples=args.n_eval, batch_size=args.batch_size)
    data.setup("fit")
    test = data.test_set.tensors["x"]
    model = build(args.m, learned_prior, args.width, args.outer_steps)
    tracker = LatentDistance(test, max(1, args.outer_steps // 10), args.n_w1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        L.Trainer(accelerator="cpu", devices=1, max_steps=-1, max_epochs=-1, logger=False, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=False, default_root_dir=scratch,
                  callbacks=[tracker], log_every_n_steps=1).fit(model, data)
    seconds = time.perf_counter() - start
    generated = model.sample(args.n_eval).cpu()
    reconstructed = model.reconstruct(test).cpu()
    result = {"latent_w1": tracker.measure(model), "critic_w1": float(np.mean(tracker.critic[-50:])),
              "fd": frechet_distance(generated, test), "fd_reconstruction": frechet_distance(reconstructed, test),
              "latent_w1_curve": tracker.curve, "seconds": round(seconds, 1)}
    result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    print(f"{name}: {result}", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=50, help="the models' latent dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent", default="gaussian", choices=["gaussian", "mixture"])
    parser.add_argument("--outer_steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--width", type=int, default=512, help="hidden width of every MLP")
    parser.add_argument("--n_train", type=int, default=20_000)
    parser.add_argument("--n_eval", type=int, default=10_000)
    parser.add_argument("--n_w1", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {"wae": run("wae", False, args), "flexae": run("flexae", True, args)}
    results["fd_ratio"] = round(results["flexae"]["fd"] / results["wae"]["fd"], 4)
    results["settings"] = {**vars(args), "latent_w1": "sample-based exact W1 (assignment) on n_w1 points"}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
