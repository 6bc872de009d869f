"""Training-step throughput of a zoo module against a plain PyTorch loop with identical networks,
optimizers, data loader and penalty, measured in one run. The last line is JSON:
``{"zoo_samples_per_s", "plain_samples_per_s", "ratio"}`` (ratio = ours / plain; samples = real images
consumed by critic steps).

``--model flatgan`` instead times FlatGAN (the Fashion-MNIST config: the authors' nets, k = 2, batch 50)
against a WGAN-GP with the same generator, 0-form critic and latents, one critic and one generator update per step for
both, on the same tangent-carrying loader: ``{"flatgan_step_s", "wgan_gp_step_s", "ratio", "k"}``.

    python -m benchmarks.step_speed --model wgan_gp --data fashion_mnist
    python -m benchmarks.step_speed --model flatgan --data fashion_mnist
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import lightning as L
import torch

from genzoo.ops.losses import clip_parameters_, gradient_penalty

REPO = Path(__file__).resolve().parents[1]


def build(model_name: str, data_name: str, data_dir: str, batch_size: int):
    import genzoo.datamodules
    from genzoo.wgan import WGAN, WGANGP

    data_classes = {"fashion_mnist": genzoo.datamodules.FashionMNIST, "mnist": genzoo.datamodules.MNIST,
                    "cifar10": genzoo.datamodules.CIFAR10, "digits": genzoo.datamodules.Digits}
    kwargs = {} if data_name == "digits" else {"data_dir": data_dir, "val_size": 0}
    datamodule = data_classes[data_name](batch_size=batch_size, **kwargs)
    model_class = {"wgan_gp": WGANGP, "wgan": WGAN}[model_name]
    extra = {"warmup": False} if model_name == "wgan" else {}
    model = model_class(datamodule.data_shape, datamodule.value_range, **extra)
    return model, datamodule


class Timer(L.Callback):
    """Wall time from the end of the warm-up batches to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.batches = warmup, 0.0, 0

    def on_train_batch_end(self, trainer, *args) -> None:
        self.batches += 1
        if self.batches == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def time_zoo(model, datamodule, batches: int, warmup: int) -> float:
    timer = Timer(warmup)
    trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=-1, limit_train_batches=batches, max_steps=-1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit_loop.max_epochs = 1
    trainer.fit(model, datamodule)
    return (batches - warmup) * datamodule.batch_size / (timer.end - timer.start)


def time_plain(model, datamodule, batches: int, warmup: int, device: torch.device) -> float:
    """The textbook loop: n_critic critic steps on fresh batches, then one generator step."""
    generator, critic = copy.deepcopy(model.generator).to(device), copy.deepcopy(model.critic).to(device)
    with_penalty = hasattr(model, "gp_weight")  # WGAN-GP; WGAN clips instead
    if with_penalty:
        g_opt = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.5, 0.9))
        c_opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))
    else:
        g_opt = torch.optim.RMSprop(generator.parameters(), lr=5e-5)
        c_opt = torch.optim.RMSprop(critic.parameters(), lr=5e-5)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    critic_steps, start = 0, 0.0
    for i, batch in enumerate(loader):
        if i == batches:
            break
        if i == warmup:
            start = time.perf_counter()
        real = batch["x"].to(device, non_blocking=True)
        n = len(real)
        critic.requires_grad_(True)
        if not with_penalty:
            clip_parameters_(critic, model.clip_value)
        with torch.no_grad():
            fake = generator(torch.randn(n, model.latent_dim, device=device))
        loss = critic(fake).mean() - critic(real).mean()
        if with_penalty:
            loss = loss + model.gp_weight * gradient_penalty(critic, real, fake)
        c_opt.zero_grad(set_to_none=True)
        loss.backward()
        c_opt.step()
        critic_steps += 1
        if critic_steps % model.phase_schedule.n_critic == 0:
            critic.requires_grad_(False)
            g_loss = -critic(generator(torch.randn(n, model.latent_dim, device=device))).mean()
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (batches - warmup) * datamodule.batch_size / (time.perf_counter() - start)


def flatgan_and_baseline(data_name: str, data_dir: str, batch_size: int, k: int):
    """FlatGAN with its config's settings and a WGAN-GP with copies of its generator and 0-form network."""
    import genzoo.datamodules
    from benchmarks.flatgan_equivariance import twin_wgan_gp
    from genzoo.flatgan import FlatGAN

    names, scales, ranges = ["rotation", "thickness", "translation_x"], [10.0, 0.05, 1.0], [15.0, 1.0, 4.0]
    if data_name == "digits":
        base = genzoo.datamodules.Digits(image_size=8, batch_size=batch_size)
        settings = dict(latent_dim=32, downsample_factor=2, blur_sigma=1.0)
    else:
        base = {"fashion_mnist": genzoo.datamodules.FashionMNIST, "mnist": genzoo.datamodules.MNIST}[data_name](
            data_dir=data_dir, image_size=32, val_size=0, batch_size=batch_size)
        settings = {}
    datamodule = genzoo.datamodules.TangentImages(base, names[:k], scales[:k], cache=True, batch_size=batch_size)
    flatgan = FlatGAN(datamodule.data_shape, datamodule.value_range, k=k, oriented_ranges=ranges[:k], **settings)
    return flatgan, twin_wgan_gp(flatgan, n_critic=1), datamodule


def time_flatgan(args) -> None:
    datamodule = None
    flat_rates, baseline_rates = [], []
    for repeat in range(args.repeats):
        L.seed_everything(repeat, verbose=False)
        flatgan, baseline, fresh = flatgan_and_baseline(args.data, args.data_dir, args.batch_size, args.k)
        datamodule = datamodule or fresh  # the tangent cache is computed once
        baseline_rates.append(time_zoo(baseline, datamodule, args.batches, args.warmup))
        flat_rates.append(time_zoo(flatgan, datamodule, args.batches, args.warmup))
    flat_s, baseline_s = args.batch_size / max(flat_rates), args.batch_size / max(baseline_rates)
    print(json.dumps({"flatgan_step_s": round(flat_s, 4), "wgan_gp_step_s": round(baseline_s, 4),
                      "ratio": round(flat_s / baseline_s, 3), "k": args.k, "data": args.data,
                      "batch_size": args.batch_size, "device": "cuda" if torch.cuda.is_available() else "cpu",
                      "torch_threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="wgan_gp", choices=["wgan_gp", "wgan", "flatgan"])
    parser.add_argument("--k", type=int, default=2, choices=[1, 2, 3], help="flatgan: oriented directions")
    parser.add_argument("--data", default="fashion_mnist", choices=["fashion_mnist", "mnist", "cifar10", "digits"])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--batch-size", type=int, default=None, help="64 (50 for flatgan, the authors')")
    parser.add_argument("--batches", type=int, default=200, help="critic steps per timed run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best counts")
    args = parser.parse_args()
    args.batch_size = args.batch_size or (50 if args.model == "flatgan" else 64)
    if args.model == "flatgan":
        return time_flatgan(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    zoo_rates, plain_rates = [], []
    for repeat in range(args.repeats):
        L.seed_everything(repeat, verbose=False)
        model, datamodule = build(args.model, args.data, args.data_dir, args.batch_size)
        plain_rates.append(time_plain(model, datamodule, args.batches, args.warmup, device))
        zoo_rates.append(time_zoo(model, datamodule, args.batches, args.warmup))
    zoo, plain = max(zoo_rates), max(plain_rates)
    print(json.dumps({"zoo_samples_per_s": round(zoo, 1), "plain_samples_per_s": round(plain, 1),
                      "ratio": round(zoo / plain, 3), "model": args.model, "data": args.data,
                      "batch_size": args.batch_size, "device": str(device), "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
