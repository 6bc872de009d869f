"""Training-step throughput of a zoo model trained by Lightning, as ``zoo fit`` trains it, against a plain
PyTorch loop over identical networks, optimizers, data loader and objective, measured in one run (alternating,
best of ``--repeats``). The models come from their configs (``configs/<model>/<data>.yaml``, callbacks and
logger left out; Lightning's logging machinery still runs at the configs' ``log_every_n_steps``). The last line
is JSON: ``{"zoo_samples_per_s", "plain_samples_per_s", "ratio", ...}`` (ratio = zoo / plain; samples = real
images consumed, one batch per training step).

The plain loops are the textbook ones, without Lightning, logging or our checks: WGAN-GP and WGAN write the
whole update in a few lines; DCGAN, FlexAE-SR and AE-OT call the same loss functions as the model (the math is
not what is measured) inside their own loop of ``requires_grad`` toggles, ``zero_grad``/``backward``/``step``.

``--model flatgan`` instead times FlatGAN (the Fashion-MNIST config: the authors' nets, batch 50, ``--k``
oriented directions) against a WGAN-GP with the same generator, 0-form critic and latents, one critic and one
generator update per step for both, on the same tangent-carrying loader: ``{"flatgan_step_s", "wgan_gp_step_s",
"ratio", "k"}`` (target: ratio <= 1 + k).

``--compile`` adds the same zoo model with ``compile: true`` (``torch.compile`` of its networks) and reports
``compile_speedup`` = compiled / eager throughput (for FlatGAN: eager / compiled step time), after a
warm-up that absorbs the compilation.

    python -m benchmarks.step_speed --model wgan_gp --data fashion_mnist
    python -m benchmarks.step_speed --model flexae_sr --data fashion_mnist
    python -m benchmarks.step_speed --model flatgan --data fashion_mnist --k 1
    python -m benchmarks.step_speed --model dcgan --compile
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import lightning as L
import torch
import yaml

from benchmarks.zoo_results import set_data_dir
from genzoo.ops.losses import clip_parameters_, gradient_penalty

REPO = Path(__file__).resolve().parents[1]
#: model name -> its config (``{data}``: the data set)
CONFIGS = {"wgan_gp": "wgan_gp/{data}.yaml", "wgan": "wgan/{data}.yaml",
           "dcgan": "ocgan/dcgan_standard_{data}.yaml", "flexae_sr": "flexae_sr/{data}.yaml",
           "aeot": "aeot/{data}.yaml"}


def build(model_name: str, data_name: str, data_dir: str, batch_size: int | None = None,
          compile: bool | dict = False) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The model and datamodule of ``configs/<model>/<data>.yaml`` (data from ``data_dir``)."""
    return build_from_config(CONFIGS[model_name].format(data=data_name), data_dir, batch_size, compile)


def build_from_config(config: str, data_dir: str, batch_size: int | None = None,
                      compile: bool | dict = False) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The model and datamodule of ``configs/<config>`` (data from ``data_dir``), ``compile`` set."""
    from genzoo.cli import run_cli

    content = yaml.safe_load((REPO / "configs" / config).read_text())
    content["trainer"] = {"logger": False, "callbacks": [], "enable_progress_bar": False}
    set_data_dir(content["data"], data_dir)
    if batch_size is not None:
        content["data"].setdefault("init_args", {})["batch_size"] = batch_size
    if compile:
        content["model"].setdefault("init_args", {})["compile"] = compile
    if content["model"]["class_path"] == "genzoo.aeot.AEOT":  # its OT solve after training is not timed: keep it small
        content["model"].setdefault("init_args", {})["transport_samples"] = 1000
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(yaml.safe_dump(content))
        with mock.patch.object(sys, "argv", sys.argv[:1]):  # LightningCLI would read our own arguments
            cli = run_cli(["--config", str(path), "--trainer.default_root_dir", directory], run=False)
    return cli.model, cli.datamodule


class Timer(L.Callback):
    """Wall time from the end of the warm-up batches to the end of batch ``last``."""

    def __init__(self, warmup: int, last: int) -> None:
        self.warmup, self.last, self.start, self.batches = warmup, last, 0.0, 0

    def on_train_batch_end(self, trainer, *args) -> None:
        self.batches += 1
        if self.batches == self.warmup:
            synchronize()
            self.start = time.perf_counter()
        if self.batches <= self.last:
            synchronize()
            self.end = time.perf_counter()


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_zoo(model, datamodule, batches: int, warmup: int, precision: str = "32-true") -> float:
    """Samples per second of ``trainer.fit``, as ``zoo fit`` runs it (without callbacks and logger). One batch more
    than timed runs last: the fit's last step also runs the after-training stage (AE-OT's OT solve), not timed."""
    timer = Timer(warmup, batches)
    trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=1, limit_train_batches=batches + 1, max_steps=-1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, precision=precision,
                        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule)
    return (batches - warmup) * datamodule.batch_size / (timer.end - timer.start)


def time_plain(step: Callable[[torch.Tensor], None], datamodule, batches: int, warmup: int,
               device: torch.device) -> float:
    """Samples per second of ``step(real)`` over the same data loader."""
    datamodule.setup("fit")
    start = 0.0
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i == batches:
            break
        if i == warmup:
            synchronize()
            start = time.perf_counter()
        step(batch["x"].to(device, non_blocking=True))
    synchronize()
    return (batches - warmup) * datamodule.batch_size / (time.perf_counter() - start)


def train_only(trained: list[torch.nn.Module], others: list[torch.nn.Module]) -> None:
    for net in others:
        net.requires_grad_(False)
    for net in trained:
        net.requires_grad_(True)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def plain_wasserstein(model) -> Callable[[torch.Tensor], None]:
    """The textbook WGAN(-GP) loop: a critic step per batch (clipping first for WGAN), a generator step after
    each cycle's critic steps (WGAN's warm-up schedule included)."""
    generator, critic = model.generator, model.critic
    c_opt, g_opt = model.configure_optimizers()
    with_penalty = hasattr(model, "gp_weight")
    state = {"critic_steps": 0, "generator_steps": 0}

    def run(real: torch.Tensor) -> None:
        n = len(real)
        train_only([critic], [generator])
        if not with_penalty:
            clip_parameters_(critic, model.clip_value)
        with torch.no_grad():
            fake = generator(torch.randn(n, model.latent_dim, device=real.device))
        loss = critic(fake).mean() - critic(real).mean()
        if with_penalty:
            loss = loss + model.gp_weight * gradient_penalty(critic, real, fake)
        step(c_opt, loss)
        state["critic_steps"] += 1
        if state["critic_steps"] == len(model.phase_schedule.cycle(state["generator_steps"])):
            state["critic_steps"] = 0
            state["generator_steps"] += 1
            train_only([generator], [critic])
            step(g_opt, -critic(generator(torch.randn(n, model.latent_dim, device=real.device))).mean())

    return run


def plain_two_player(model) -> Callable[[torch.Tensor], None]:
    """DCGAN/LSGAN: one discriminator and one generator step per batch, each on fresh noise (as the model)."""
    generator, critic = model.generator, model.critic
    c_opt, g_opt = model.configure_optimizers()

    def run(real: torch.Tensor) -> None:
        z = lambda: torch.randn(len(real), model.latent_dim, device=real.device)  # noqa: E731
        train_only([critic], [generator])
        with torch.no_grad():
            fake = generator(z())
        step(c_opt, model.critic_objective(critic(real), critic(fake)))
        train_only([generator], [critic])
        step(g_opt, model.generator_objective(critic(generator(z()))))

    return run


def plain_flexae(model) -> Callable[[torch.Tensor], None]:
    """FlexAE(-SR)'s outer step by hand: a reconstruction batch, n_critic critic batches, the last also updating
    the smoothing, P-GEN and encoder objectives (the model's own loss functions)."""
    optimizers = dict(zip(model._optimizer_specs, model.configure_optimizers(), strict=True))
    encoder, decoder, prior = model.encoder, model.decoder, model.prior
    latent_critic, image_critic = model.latent_critic, model.image_critic
    nets = [n for n in (encoder, decoder, latent_critic, image_critic, prior) if n is not None]
    state = {"position": 0}

    def others(*trained):
        return [n for n in nets if all(n is not t for t in trained)]

    def run(x: torch.Tensor) -> None:
        position, state["position"] = state["position"], (state["position"] + 1) % (model.n_critic + 1)
        if position == 0:
            train_only([encoder, decoder], others(encoder, decoder))
            step(optimizers["autoencoder"], model.reconstruction_loss(x, decoder(encoder(x))))
            return
        n = len(x)
        uniform = lambda: torch.rand(n, device=x.device)  # noqa: E731
        noise = prior.noise(n, None) if model.learned_prior else None
        with torch.no_grad():
            codes = encoder(x)
            prior_codes = prior(noise) if model.learned_prior else prior.sample(n).to(x.device)
            x_inp = model.interpolations(codes, uniform()) if image_critic is not None else None
        train_only([latent_critic], others(latent_critic))
        step(optimizers["latent_critic"], model.critic_terms(latent_critic, codes, prior_codes, uniform())["loss"])
        if image_critic is not None:
            train_only([image_critic], others(image_critic))
            step(optimizers["image_critic"], model.critic_terms(image_critic, x, x_inp, uniform())["loss"])
        if position < model.n_critic:
            return
        with torch.no_grad():
            decoder(prior_codes)
        if image_critic is not None:
            train_only([encoder, decoder], others(encoder, decoder))
            step(optimizers["smoothing"], model.smoothing_loss(x, uniform()))
        if model.learned_prior:
            train_only([prior], others(prior))
            step(optimizers["prior"], model.prior_loss(noise))
        train_only([encoder], others(encoder))
        step(optimizers["encoder"], model.encoder_loss(x))

    return run


def plain_aeot(model) -> Callable[[torch.Tensor], None]:
    """AE-OT's autoencoder phase: a reconstruction step per batch (the OT solve after training is not timed)."""
    (optimizer,) = model.configure_optimizers()

    def run(x: torch.Tensor) -> None:
        codes = model.encoder(x)
        loss = model.reconstruction_loss(x, model.decoder(codes)) + model.code_l1_weight * codes.float().abs().sum()
        step(optimizer, loss)

    return run


PLAIN_LOOPS = {"wgan_gp": plain_wasserstein, "wgan": plain_wasserstein, "dcgan": plain_two_player,
               "flexae_sr": plain_flexae, "aeot": plain_aeot}


def flatgan_and_baseline(data_name: str, data_dir: str, batch_size: int, k: int, compile: bool = False):
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
    flatgan = FlatGAN(datamodule.data_shape, datamodule.value_range, k=k, oriented_ranges=ranges[:k],
                      compile=compile, **settings)
    return flatgan, twin_wgan_gp(flatgan, n_critic=1), datamodule


def time_flatgan(args) -> None:
    datamodule = None
    rates: dict[str, list[float]] = {"flatgan": [], "wgan_gp": [], "compiled": []}
    for repeat in range(args.repeats):
        L.seed_everything(repeat, verbose=False)
        flatgan, baseline, fresh = flatgan_and_baseline(args.data, args.data_dir, args.batch_size, args.k)
        datamodule = datamodule or fresh  # the tangent cache is computed once
        rates["wgan_gp"].append(time_zoo(baseline, datamodule, args.batches, args.warmup))
        rates["flatgan"].append(time_zoo(flatgan, datamodule, args.batches, args.warmup))
        if args.compile:
            compiled, _, _ = flatgan_and_baseline(args.data, args.data_dir, args.batch_size, args.k, compile=True)
            rates["compiled"].append(time_zoo(compiled, datamodule, args.batches, args.warmup))
    flat_s, baseline_s = args.batch_size / max(rates["flatgan"]), args.batch_size / max(rates["wgan_gp"])
    result = {"flatgan_step_s": round(flat_s, 4), "wgan_gp_step_s": round(baseline_s, 4),
              "ratio": round(flat_s / baseline_s, 3), "k": args.k, "data": args.data, "batch_size": args.batch_size,
              "batches": args.batches, "device": "cuda" if torch.cuda.is_available() else "cpu",
              "torch_threads": torch.get_num_threads()}
    if args.compile:
        result["compiled_flatgan_step_s"] = round(args.batch_size / max(rates["compiled"]), 4)
        result["compile_speedup"] = round(max(rates["compiled"]) / max(rates["flatgan"]), 3)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="wgan_gp", choices=[*CONFIGS, "flatgan"])
    parser.add_argument("--k", type=int, default=2, choices=[1, 2, 3], help="flatgan: oriented directions")
    parser.add_argument("--data", default="fashion_mnist", choices=["fashion_mnist", "mnist", "cifar10", "digits"])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--batch-size", type=int, default=None, help="the config's (50 for flatgan, the authors')")
    parser.add_argument("--batches", type=int, default=200, help="training steps (batches) per timed run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best counts")
    parser.add_argument("--compile", action="store_true", help="also time the model with compile: true")
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    if args.model == "flatgan":
        args.batch_size = args.batch_size or 50
        return time_flatgan(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rates: dict[str, list[float]] = {"zoo": [], "plain": [], "compiled": []}
    for repeat in range(args.repeats):
        L.seed_everything(repeat, verbose=False)
        model, datamodule = build(args.model, args.data, args.data_dir, args.batch_size)
        plain = copy.deepcopy(model).to(device)
        rates["plain"].append(time_plain(PLAIN_LOOPS[args.model](plain), datamodule, args.batches, args.warmup,
                                         device))
        rates["zoo"].append(time_zoo(model, datamodule, args.batches, args.warmup, args.precision))
        if args.compile:
            compiled, _ = build(args.model, args.data, args.data_dir, args.batch_size, compile=True)
            rates["compiled"].append(time_zoo(compiled, datamodule, args.batches, args.warmup, args.precision))
    zoo, plain = max(rates["zoo"]), max(rates["plain"])
    result = {"zoo_samples_per_s": round(zoo, 1), "plain_samples_per_s": round(plain, 1),
              "ratio": round(zoo / plain, 3), "model": args.model, "data": args.data,
              "config": "configs/" + CONFIGS[args.model].format(data=args.data), "batch_size": datamodule.batch_size,
              "batches": args.batches, "precision": args.precision, "device": str(device),
              "torch_threads": torch.get_num_threads(), "runs": {k: [round(r, 1) for r in v] for k, v in rates.items()}}
    if args.compile:
        result["compiled_samples_per_s"] = round(max(rates["compiled"]), 1)
        result["compile_speedup"] = round(max(rates["compiled"]) / zoo, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
