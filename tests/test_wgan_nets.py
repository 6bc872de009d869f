"""The official WGAN-GP networks (zoo/nets/wgan_gp.py) and the bias option of the DCGAN nets (the WGAN configs'
bias-free nets: tests/test_configs.py)."""

import lightning as L
import pytest
import torch
from torch import nn

from genzoo.datamodules.base import TensorDictDataset, ZooDataModule
from genzoo.nets import (
    DCGANCritic,
    DCGANGenerator,
    WGANGPCifarCritic,
    WGANGPCifarGenerator,
    WGANGPMnistCritic,
    WGANGPMnistGenerator,
    WGANGPResNetCritic,
    WGANGPResNetGenerator,
)
from genzoo.nets.common import has_batch_norm
from genzoo.wgan import WGANGP
from tests.helpers import quiet_trainer

NETS = {  # generator, critic, the image side the official script is built for
    "mnist": (WGANGPMnistGenerator, WGANGPMnistCritic, 28),
    "cifar": (WGANGPCifarGenerator, WGANGPCifarCritic, 32),
    "resnet": (WGANGPResNetGenerator, WGANGPResNetCritic, 32),
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NETS)
def test_shapes_and_value_range(name, channels, value_range):
    generator_cls, critic_cls, size = NETS[name]
    torch.manual_seed(0)
    generator = generator_cls(16, (channels, size, size), value_range, width=8)
    critic = critic_cls((channels, size, size), width=8)
    # large latents push the output activation to its limits: they must still stay inside the range
    x = generator(10 * torch.randn(6, 16))
    assert x.shape == (6, channels, size, size)
    low, high = value_range
    assert x.min() >= low and x.max() <= high
    assert x.min() < low + 0.25 * (high - low) and x.max() > high - 0.25 * (high - low)  # the range is used
    scores = critic(x)
    assert scores.shape == (6,) and torch.isfinite(scores).all()


def test_parameter_counts_equal_the_official_scripts():
    # gan_mnist.py, DIM 64, z 128, 1 channel (kernel 5x5; "a->b: w + b" = weights + biases):
    #   G: Linear 128->4096: 524,288 + 4,096; Deconv 256->128: 819,200 + 128; 128->64: 204,800 + 64;
    #      64->1: 1,600 + 1                                                             = 1,554,177
    #   D: Conv 1->64: 1,600 + 64; 64->128: 204,800 + 128; 128->256: 819,200 + 256; Linear 4096->1: 4,097
    #                                                                                   = 1,030,145
    assert count(WGANGPMnistGenerator(128, (1, 28, 28))) == 1_554_177
    assert count(WGANGPMnistCritic((1, 28, 28))) == 1_030_145
    # gan_cifar.py, DIM 128, z 128, 3 channels:
    #   G: Linear 128->8192: 1,048,576 + 8,192; BN1 (per feature) 2·8192; Deconv 512->256: 3,276,800 + 256;
    #      BN2 512; 256->128: 819,200 + 128; BN3 256; 128->3: 9,600 + 3                  = 5,179,907
    #   D: Conv 3->128: 9,600 + 128; 128->256: 819,200 + 256; 256->512: 3,276,800 + 512; Linear 8192->1: 8,193
    #                                                                                   = 4,114,689
    assert count(WGANGPCifarGenerator(128, (3, 32, 32))) == 5_179_907
    assert count(WGANGPCifarCritic((3, 32, 32))) == 4_114_689
    # gan_cifar_resnet.py, DIM_G = DIM_D = 128, z 128, 3 channels (3x3 conv 128->128: 147,456 + 128 = 147,584):
    #   G: Linear 128->2048: 262,144 + 2,048 = 264,192;
    #      3 up-blocks of [BN 256, conv 147,584, BN 256, conv 147,584, 1x1 shortcut 16,384 + 128] = 3 x 312,192;
    #      output BN 256; Conv 3x3 128->3: 3,456 + 3                                     = 1,204,483
    #   D: first block: conv 3->128 3,456 + 128, conv 147,584, 1x1 shortcut 384 + 128 = 151,680;
    #      down-block: 2 convs + 1x1 shortcut 16,512 = 311,680; two plain blocks: 2 x 2 x 147,584 = 590,336;
    #      Linear 128->1: 129                                                            = 1,053,825
    assert count(WGANGPResNetGenerator(128, (3, 32, 32))) == 1_204_483
    assert count(WGANGPResNetCritic((3, 32, 32))) == 1_053_825


def test_normalisation_is_where_the_official_scripts_put_it():
    # gan_mnist.py uses batch norm only in its `wgan` mode: none in the WGAN-GP nets
    assert not has_batch_norm(WGANGPMnistGenerator(16, (1, 28, 28)))
    assert has_batch_norm(WGANGPCifarGenerator(16, (3, 32, 32)))
    assert has_batch_norm(WGANGPResNetGenerator(16, (3, 32, 32)))
    # WGAN-GP forbids batch norm in the critic; the official critics have no norm layer of any kind
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    for critic in (WGANGPMnistCritic((1, 28, 28)), WGANGPCifarCritic((3, 32, 32)), WGANGPResNetCritic((3, 32, 32))):
        assert not any(isinstance(m, norms) for m in critic.modules()), type(critic).__name__
    WGANGP((3, 32, 32), generator=WGANGPResNetGenerator, critic=WGANGPResNetCritic)  # the model accepts them


def test_mnist_generator_crops_8_to_7():
    generator = WGANGPMnistGenerator(16, (1, 28, 28), width=4)
    sizes = []
    for module in generator.net:
        if isinstance(module, nn.ConvTranspose2d):
            module.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    generator(torch.randn(2, 16))
    assert sizes == [8, 14, 28]


def test_initialisation_follows_tflib():
    torch.manual_seed(0)
    critic = WGANGPMnistCritic((1, 28, 28), width=64)
    conv = critic.net[2]  # Conv 5x5 stride 2, 64 -> 128: He, fan_in 64·25, fan_out 128·25/4
    bound = (4 / (64 * 25 + 128 * 25 / 4)) ** 0.5 * 3 ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.95 * bound
    assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    head = critic.net[-1]  # Linear 4096 -> 1: Glorot
    assert head.weight.abs().max() <= (2 / 4097) ** 0.5 * 3 ** 0.5


@pytest.mark.parametrize("net, data_shape, message", [
    (lambda s: WGANGPMnistGenerator(16, s), (1, 32, 32), r"28x28 .*\(C, 28, 28\), got \(1, 32, 32\)"),
    (lambda s: WGANGPMnistCritic(s), (784,), r"\(C, 28, 28\), got \(784,\)"),
    (lambda s: WGANGPCifarGenerator(16, s), (3, 28, 28), r"WGANGPCifarGenerator .*32x32"),
    (lambda s: WGANGPCifarCritic(s), (3, 32, 64), r"\(C, 32, 32\), got \(3, 32, 64\)"),
    (lambda s: WGANGPResNetGenerator(16, s), (3, 64, 64), r"WGANGPResNetGenerator .*32x32"),
    (lambda s: WGANGPResNetCritic(s), (1, 3, 32, 32), r"\(C, 32, 32\), got \(1, 3, 32, 32\)"),
])
def test_unsupported_data_shapes_are_rejected(net, data_shape, message):
    with pytest.raises(ValueError, match=message):
        net(data_shape)


def test_impossible_sizes_are_rejected():
    with pytest.raises(ValueError, match="width"):
        WGANGPResNetCritic((3, 32, 32), width=0)
    with pytest.raises(ValueError, match="latent_dim"):
        WGANGPMnistGenerator(0, (1, 28, 28))


def test_dcgan_bias_option_default_keeps_the_biases_no_norm_follows():
    def biased(net):
        return sum(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))

    # batch norm: only the generator's last and the critic's first and last convolutions carry a bias
    assert biased(DCGANGenerator(16, (3, 32, 32), norm="batch")) == 1
    assert biased(DCGANCritic((3, 32, 32), norm="batch")) == 2
    assert biased(DCGANCritic((3, 32, 32), norm="none")) == 4  # every one without a norm
    assert biased(DCGANGenerator(16, (3, 32, 32), norm="none", bias=False)) == 0
    assert biased(DCGANCritic((3, 32, 32), norm="none", bias=False)) == 0


class Bars(ZooDataModule):
    """28x28 images in [0, 1]: black with one white 6-pixel band at a random row (mean intensity 6/28)."""

    def __init__(self, num_samples: int = 256, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, value_range=(0.0, 1.0))
        self.num_samples = num_samples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1, 28, 28)

    def build_datasets(self):
        g = torch.Generator().manual_seed(self.seed)
        rows = torch.randint(0, 28 - 6 + 1, (self.num_samples,), generator=g)
        inside = (torch.arange(28)[None, :] >= rows[:, None]) & (torch.arange(28)[None, :] < rows[:, None] + 6)
        x = inside[:, None, :, None].expand(-1, 1, 28, 28).float()
        return TensorDictDataset(x=x), None, None


class RecordCritic(L.Callback):
    def __init__(self) -> None:
        self.wasserstein: list[float] = []
        self.penalty: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.wasserstein.append(float(trainer.callback_metrics["train/wasserstein"]))
        self.penalty.append(float(trainer.callback_metrics["train/gradient_penalty"]))


def test_wgan_gp_trains_with_the_mnist_nets(tmp_path):
    # a critic that starts unable to tell grey fakes from the bars must learn to (its Wasserstein estimate
    # grows), keep its gradient norm near 1 (a small penalty), and pull the generator toward the data
    L.seed_everything(0)
    adam = lambda p: torch.optim.Adam(p, 1e-3, betas=(0.5, 0.9))  # noqa: E731
    model = WGANGP((1, 28, 28), (0.0, 1.0), latent_dim=16,
                   generator=lambda z, s, r: WGANGPMnistGenerator(z, s, r, width=8),
                   critic=lambda s: WGANGPMnistCritic(s, width=8), critic_optimizer=adam, generator_optimizer=adam)
    data_mean = 6 / 28
    before = abs(model.sample(256).mean().item() - data_mean)
    record = RecordCritic()
    # log_every_n_steps=1: each step's values, not means over an interval
    trainer = quiet_trainer(tmp_path, max_steps=120, callbacks=[record], log_every_n_steps=1)
    trainer.fit(model, Bars())  # 100 critic, 20 generator steps
    after = abs(model.sample(256).mean().item() - data_mean)
    tail_wasserstein, tail_penalty = record.wasserstein[-20:], record.penalty[-20:]
    assert len(record.wasserstein) == 100 and model.generator_step == 20
    assert record.wasserstein[0] < 3.0 and min(tail_wasserstein) > 8.0, (record.wasserstein[0], tail_wasserstein)
    assert max(tail_penalty) < 1.0, tail_penalty
    assert before > 0.2 and after < 0.5 * before, (before, after)


class RandomImages(ZooDataModule):
    def __init__(self, shape: tuple[int, ...] = (3, 32, 32), num_samples: int = 32, batch_size: int = 4) -> None:
        super().__init__(batch_size=batch_size)
        self.shape, self.num_samples = shape, num_samples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.shape

    def build_datasets(self):
        g = torch.Generator().manual_seed(self.seed)
        return TensorDictDataset(x=torch.rand(self.num_samples, *self.shape, generator=g) * 2 - 1), None, None


def test_bf16_mixed_training_with_the_resnet_nets(tmp_path):
    model = WGANGP((3, 32, 32), latent_dim=16, generator=lambda z, s, r: WGANGPResNetGenerator(z, s, r, width=8),
                   critic=lambda s: WGANGPResNetCritic(s, width=8))
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    quiet_trainer(tmp_path, max_steps=12, precision="bf16-mixed").fit(model, RandomImages())
    assert model.generator_step == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # every weight trains (some biases need not: the critic's output bias cancels in the Wasserstein loss, and a
    # bias that batch norm follows cancels in the norm, as in the official code)
    unchanged = [k for k, v in model.named_parameters() if k.endswith("weight") and torch.equal(v, initial[k])]
    assert not unchanged, unchanged
    assert model.sample(4).dtype == torch.float32
