"""FLOPs and CPU wall time of octave against standard convolutions, per layer and per OC-DCGAN training step.

    python -m benchmarks.octave_speed [--channels 64] [--batch 16] [--repeats 20] [--threads 2]

Layer: a 3x3 ``OctaveConv2d`` with α_in = α_out = 0.5 against the same layer with α = 0 (a plain 3x3 conv of the
same width), forward + backward, at 32, 64 and 128 px. Model: one DCGAN training step (a discriminator and a
generator update) with the OC-GAN nets at 64 px, α = 0.5 against α = 0. FLOPs are counted by
``torch.utils.flop_counter`` (convolutions and matrix products; pooling and upsampling are free). Ratios are
octave / standard; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from genzoo.gan import DCGAN
from genzoo.nets import OCGANCritic, OCGANGenerator
from genzoo.nets.octave import OctaveConv2d, octave_channels


def layer_input(channels: int, alpha: float, size: int, batch: int):
    high, low = octave_channels(channels, alpha)
    x_high = torch.randn(batch, high, size, size, requires_grad=True)
    if not low:
        return x_high
    return x_high, torch.randn(batch, low, size // 2, size // 2, requires_grad=True)


def layer_step(layer: torch.nn.Module, x) -> None:
    out = layer(x)
    loss = sum(o.square().mean() for o in (out if isinstance(out, tuple) else (out,)))
    loss.backward()


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def seconds(fn, repeats: int) -> float:
    for _ in range(3):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]  # median: robust to the odd stall


def compare_layers(channels: int, batch: int, repeats: int) -> dict[str, dict[str, float]]:
    results = {}
    for size in (32, 64, 128):
        measured = {}
        for alpha in (0.5, 0.0):
            layer = OctaveConv2d(channels, channels, 3, alpha, alpha)
            x = layer_input(channels, alpha, size, batch)
            step = functools.partial(layer_step, layer, x)
            measured[alpha] = (flops(step), seconds(step, repeats))
        results[str(size)] = {"flops_ratio": measured[0.5][0] / measured[0.0][0],
                              "time_ratio": measured[0.5][1] / measured[0.0][1],
                              "standard_ms": 1e3 * measured[0.0][1], "octave_ms": 1e3 * measured[0.5][1]}
        print(f"layer {size}px: {results[str(size)]}", flush=True)
    return results


def model_step_seconds(alpha: float, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    shape = (3, 64, 64)
    conv = "octave" if alpha > 0 else "standard"
    model = DCGAN(data_shape=shape, generator=functools.partial(OCGANGenerator, width=32, conv=conv, alpha=alpha),
                  critic=functools.partial(OCGANCritic, width=32, conv=conv, alpha=alpha))
    g_opt, d_opt = (torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999))
                    for p in (model.generator.parameters(), model.critic.parameters()))
    real = torch.rand(batch, *shape) * 2 - 1
    noise = torch.Generator().manual_seed(0)  # the losses' randomness (none for DCGAN, but part of the signature)

    def step():  # the two updates of one batch, without the Lightning loop around them
        fake = model.generator(torch.randn(batch, 100))
        d_opt.zero_grad()
        model.critic_loss({"x": real}, {"x": fake.detach()}, noise)["loss"].backward()
        d_opt.step()
        g_opt.zero_grad()
        model.generator_loss({"x": fake}, noise)["loss"].backward()
        g_opt.step()

    return seconds(step, repeats)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = compare_layers(args.channels, args.batch, args.repeats)
    octave, standard = (model_step_seconds(alpha, args.batch, max(3, args.repeats // 4)) for alpha in (0.5, 0.0))
    result = {"layer": layers, "model": {"dcgan_time_ratio": octave / standard, "octave_step_ms": 1e3 * octave,
                                         "standard_step_ms": 1e3 * standard},
              "channels": args.channels, "batch": args.batch, "threads": args.threads}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
