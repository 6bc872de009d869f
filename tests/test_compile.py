"""``compile``: every model's networks under ``torch.compile`` train to the same losses as eager ones.

The suite compiles with the ``aot_eager`` backend (TorchDynamo's graph capture and AOTAutograd's compiled forward
and backward, without Inductor's C++ code generation, which takes minutes per network on a 2-core machine);
``python -m benchmarks.step_speed --compile`` measures the default Inductor backend."""

from __future__ import annotations

import math

import lightning as L
import pytest

from genzoo.aeot import AEOT
from genzoo.datamodules import Circle5
from genzoo.flatgan import FlatGAN
from genzoo.flexae import FlexAESR
from genzoo.gan import DCGAN
from genzoo.nets import MLPCritic, MLPGenerator, MLPOneForm
from genzoo.wgan import WGAN, WGANGP
from tests.helpers import PointsDataModule, quiet_trainer

COMPILE = {"backend": "aot_eager"}
TWO_PI = 2 * math.pi


class RecordLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, *args) -> None:
        self.losses.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("_loss")})


def wgan_gp(**kwargs):
    return WGANGP((2,), (-2.0, 2.0), latent_dim=4, n_critic=2, **kwargs)


def wgan(**kwargs):
    return WGAN((2,), (-2.0, 2.0), latent_dim=4, n_critic=2, warmup=False, **kwargs)


def dcgan(**kwargs):
    return DCGAN((2,), (-2.0, 2.0), latent_dim=4, **kwargs)


def flexae_sr(**kwargs):
    return FlexAESR((2,), (-2.0, 2.0), latent_dim=2, n_critic=2,
                    latent_critic=lambda s: MLPCritic(s, width=16, depth=2),
                    image_critic=lambda s: MLPCritic(s, width=16, depth=2), **kwargs)


def aeot(**kwargs):
    return AEOT((2,), (-2.0, 2.0), latent_dim=2, solver={"max_steps": 50}, **kwargs)


def flatgan(**kwargs):
    return FlatGAN((2,), (-math.inf, math.inf), latent_dim=3, k=1, oriented_ranges=[TWO_PI], nuisance="uniform",
                   generator=lambda z, s, r: MLPGenerator(z, s, r, width=16, depth=2, activation="leaky_relu"),
                   zero_form=lambda s: MLPCritic(s, width=16, depth=2, activation="leaky_relu"),
                   one_form=lambda s, f: MLPOneForm(s, f, width=8, depth=2), **kwargs)


def losses_of(build, tmp_path, **kwargs) -> tuple[L.LightningModule, list[dict[str, float]]]:
    L.seed_everything(0)
    model = build(**kwargs)
    record = RecordLosses()
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=8, callbacks=[record], log_every_n_steps=1)
    trainer.fit(model, Circle5(num_samples=128, batch_size=16) if build is flatgan else PointsDataModule())
    return model, record.losses


@pytest.mark.parametrize("build", [wgan_gp, wgan, dcgan, flexae_sr, aeot, flatgan])
def test_compiled_networks_train_to_the_eager_losses(build, tmp_path):
    eager_model, eager = losses_of(build, tmp_path / "eager")
    compiled_model, compiled = losses_of(build, tmp_path / "compiled", compile=COMPILE)
    names = compiled_model.compile_networks()  # idempotent: what setup compiled
    assert names and all(getattr(compiled_model, n)._compiled_call_impl is not None for n in names)
    assert not any(getattr(eager_model, n)._compiled_call_impl is not None for n in names)
    assert len(eager) == len(compiled) == 8 and eager[-1]
    for a, b in zip(eager, compiled, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    # compiling leaves parameter names alone: checkpoints load into eager models
    assert compiled_model.state_dict().keys() == eager_model.state_dict().keys()


def test_gradient_penalty_critics_stay_eager():
    # a compiled graph cannot be differentiated twice, which WGAN-GP's penalty needs
    assert WGANGP.compiled_networks == ("generator",) and FlatGAN.compiled_networks == ("generator",)
    assert "critic" in WGAN.compiled_networks


def test_bad_compile_options_are_refused():
    with pytest.raises(ValueError, match="unknown torch.compile options \\['modes'\\]"):
        wgan_gp(compile={"modes": "max-autotune"})
    with pytest.raises(ValueError, match="compile must be true, false or a dict"):
        wgan_gp(compile="yes")
