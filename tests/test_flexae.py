"""WAE, FlexAE and FlexAE-SR: each objective term by hand, which networks each optimizer moves, the learned
prior's pull toward the codes, exact resume, the synthetic datamodule and bad input."""

from __future__ import annotations

import copy
import functools
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from genzoo.autoencoder import frozen_running_stats, paired
from genzoo.datamodules import LatentManifold
from genzoo.flexae import FlexAE, FlexAESR
from genzoo.nets import InfoGANCritic, InfoGANDecoder, InfoGANEncoder, MLPCritic, MLPGenerator
from genzoo.ops.losses import imq_mmd, reconstruction_sse
from genzoo.priors import GaussianPrior, LearnedPrior
from genzoo.wae import WAE
from tests.helpers import ImagesDataModule, PointsDataModule, quiet_trainer


class Linear(nn.Module):
    """A critic C(v) = w·v: its input gradient is w everywhere, so the gradient penalty is (‖w‖ − 1)²."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v.flatten(1) @ self.w


def identity_linear(d: int) -> nn.Linear:
    layer = nn.Linear(d, d)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(d))
        layer.bias.zero_()
    return layer


def linear_flexae(cls=FlexAESR, **kwargs) -> FlexAE:
    """3-D data, 3-D codes, identity encoder/decoder, linear critics: every term has a closed form."""
    return cls((3,), (-5.0, 5.0), latent_dim=3, encoder=lambda s, m: identity_linear(3),
               decoder=lambda m, s, r: identity_linear(3), latent_critic=lambda s: Linear([1.0, 2.0, 2.0]),
               image_critic=lambda s: Linear([0.0, 0.5, 0.0]),
               prior_network=lambda m_in, s, r: identity_linear(3), **kwargs)


# ---------------------------------------------------------------------------------------------- the terms

def test_reconstruction_is_the_per_image_sum_of_squares_averaged_over_the_batch():
    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    x_hat = torch.zeros_like(x)
    assert reconstruction_sse(x, x_hat).item() == pytest.approx((3.0 + 1.0) / 2)
    model = WAE((1, 8, 8), reconstruction_weight=0.05)
    assert model.reconstruction_loss(x, x_hat).item() == pytest.approx(0.05 * 2.0)


def test_imq_mmd_matches_a_loop_over_pairs():
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(5, 3, generator=g) + 1, torch.randn(5, 3, generator=g)
    n, d = q.shape
    expected = 0.0
    for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2 * d * 1.0 * s

        def k(a, b, c=c):
            return c / (c + float(((a - b) ** 2).sum()))

        same = sum(k(q[i], q[j]) + k(p[i], p[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        cross = sum(k(q[i], p[j]) for i in range(n) for j in range(n)) * 2 / n ** 2
        expected += same - cross
    assert imq_mmd(q, p).item() == pytest.approx(expected, rel=1e-5)
    assert imq_mmd(q, q).item() < imq_mmd(q, p).item()
    with pytest.raises(ValueError, match="imq_mmd"):
        imq_mmd(q, p[:4])


def test_wae_latent_penalties():
    codes, prior = torch.randn(6, 4), torch.randn(6, 4)
    mmd = WAE((1, 8, 8), latent_dim=4, regularizer="mmd")
    torch.testing.assert_close(mmd.latent_penalty(codes, prior), imq_mmd(codes, prior))
    gan = WAE((1, 8, 8), latent_dim=4, regularizer="gan", adversary=lambda s: Linear([1.0, 0.0, 0.0, -1.0]))
    logits = codes[:, 0] - codes[:, 3]
    torch.testing.assert_close(gan.latent_penalty(codes, prior), nn.functional.softplus(-logits).mean())


def test_the_wae_adversary_starts_as_the_wae_code_initialises_it():
    """WAE's ops.linear: every adversary layer N(0, 0.01²) weights and zero biases; other MLPs keep their init."""
    torch.manual_seed(0)
    adversary = WAE((1, 8, 8), latent_dim=16, regularizer="gan").adversary
    layers = [m for m in adversary.modules() if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in layers] == [512] * 4 + [1]
    for layer in layers[:-1]:  # 8k-262k weights each: the sample std is within a few percent of 0.01
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert abs(layer.weight.mean().item()) < 1e-3
    assert layers[-1].weight.abs().max().item() < 0.05  # 512 weights, all within 5 sigma
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in layers)
    default = MLPCritic((16,), width=512, depth=4).net[2]  # PyTorch's init: uniform(±1/sqrt(512)), non-zero biases
    assert default.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 512), rel=0.05)
    assert torch.count_nonzero(default.bias) > 0
    with pytest.raises(ValueError, match="init must be one of"):
        MLPCritic((16,), init="normal")


def test_flexae_terms_by_hand():
    model = linear_flexae(gp_weight=10.0, lambda_prior=0.5, lambda_smoothing=2.0)
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    z_hat = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    w = torch.tensor([1.0, 2.0, 2.0])  # ‖w‖ = 3: penalty (3 − 1)² = 4
    terms = model.critic_terms(model.latent_critic, z, z_hat, torch.tensor([0.3, 0.9]))
    wasserstein = (z @ w).mean() - (z_hat @ w).mean()  # Eq. 6: codes are "real", prior samples "fake"
    assert terms["loss"].item() == pytest.approx(-wasserstein.item() + 10 * 4.0)
    assert terms["wasserstein"].item() == pytest.approx(wasserstein.item())
    assert terms["gradient_penalty"].item() == pytest.approx(4.0)

    gamma = torch.tensor([0.25, 1.0])
    x_inp = model.interpolations(z, gamma)  # identity decoder: the code mixtures themselves
    torch.testing.assert_close(x_inp, torch.stack([0.25 * z[0] + 0.75 * z[1], z[1]]))
    torch.testing.assert_close(paired(z), z.flip(0))
    assert model.smoothing_loss(z, gamma).item() == pytest.approx(-2.0 * (0.5 * x_inp[:, 1]).mean().item())
    assert model.encoder_loss(z).item() == pytest.approx(0.5 * (z @ w).mean().item())
    assert model.prior_loss(z_hat).item() == pytest.approx(-(z_hat @ w).mean().item())


# ------------------------------------------------------------------------------ who each optimizer moves

# tiny networks for 8x8 images, as picklable factories (saved in hparams, so checkpoints reload on their own)
TINY = dict(encoder=functools.partial(InfoGANEncoder, width=4, hidden=16),
            decoder=functools.partial(InfoGANDecoder, width=4, hidden=16))
TINY_FLEXAE = dict(**TINY, image_critic=functools.partial(InfoGANCritic, width=4, hidden=16),
                   latent_critic=functools.partial(MLPCritic, width=16, depth=2),
                   prior_network=functools.partial(MLPGenerator, width=16, depth=2))

OWNERS = {"autoencoder": ("encoder.", "decoder."), "smoothing": ("encoder.", "decoder."), "encoder": ("encoder.",),
          "latent_critic": ("latent_critic.",), "image_critic": ("image_critic.",), "prior": ("prior.",),
          "adversary": ("adversary.",)}


def watched_optimizers(record: list, model_ref: list, names) -> dict:
    class Watched(torch.optim.Adam):
        def __init__(self, params, name):
            super().__init__(params, lr=1e-3)
            self.name = name

        def step(self, closure=None):
            model = model_ref[0]
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            out = super().step(closure)
            record.append((self.name, {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}))
            return out

    return {f"{name}_optimizer": functools.partial(Watched, name=name) for name in names}


@pytest.mark.parametrize("kind", ["flexae_sr", "flexae", "wae_gan", "wae_mmd"])
def test_each_update_moves_exactly_the_networks_its_optimizer_owns(kind, tmp_path):
    record, model_ref = [], []
    if kind.startswith("flexae"):
        names = ["autoencoder", "latent_critic", "image_critic", "smoothing", "prior", "encoder"]
        if kind == "flexae":
            names = [n for n in names if n not in ("image_critic", "smoothing")]
        cls = FlexAESR if kind == "flexae_sr" else FlexAE
        model = cls((1, 8, 8), (-1.0, 1.0), latent_dim=4, n_critic=2, **TINY_FLEXAE,
                    **watched_optimizers(record, model_ref, names))
    else:
        regularizer = kind.split("_")[1]
        names = ["autoencoder", "adversary"] if regularizer == "gan" else ["autoencoder"]
        model = WAE((1, 8, 8), (-1.0, 1.0), latent_dim=4, regularizer=regularizer, **TINY,
                    adversary=functools.partial(MLPCritic, width=16, depth=2),
                    **watched_optimizers(record, model_ref, names))
    model_ref.append(model)
    quiet_trainer(tmp_path, max_steps=16).fit(model, ImagesDataModule(batch_size=8))
    if kind == "flexae_sr":  # one outer step: reconstruction, 2 x both critics, then the generator side
        assert [name for name, _ in record[:8]] == ["autoencoder", "latent_critic", "image_critic", "latent_critic",
                                                    "image_critic", "smoothing", "prior", "encoder"]
    elif kind == "flexae":
        assert [name for name, _ in record[:5]] == ["autoencoder", "latent_critic", "latent_critic", "prior",
                                                    "encoder"]
    assert {name for name, _ in record} == set(names)
    for name, changed in record:
        owners = OWNERS[name]
        assert changed, f"the {name} update changed nothing"
        outside = sorted(p for p in changed if not p.startswith(owners))
        assert not outside, f"the {name} update changed parameters it does not own: {outside[:3]}"
        for owner in owners:
            assert any(p.startswith(owner) for p in changed), f"the {name} update did not reach {owner}"


# ------------------------------------------------------------------------------------ the learned prior

def test_the_learned_prior_moves_onto_the_codes(tmp_path):
    """Fixed identity encoder/decoder (learning rate 0) on points around (3, 3): only P-GEN and the latent
    critic learn, and P-GEN's samples must travel from N(0, I) to where the codes are."""
    torch.manual_seed(0)
    frozen = functools.partial(torch.optim.SGD, lr=0.0)
    model = FlexAE((2,), (-10.0, 10.0), latent_dim=2, encoder=lambda s, m: identity_linear(2),
                   decoder=lambda m, s, r: identity_linear(2), latent_critic=lambda s: MLPCritic(s, 64, 2),
                   prior_network=lambda m_in, s, r: MLPGenerator(m_in, s, None, 64, 2),
                   autoencoder_optimizer=frozen, encoder_optimizer=frozen,
                   prior_optimizer=functools.partial(torch.optim.Adam, lr=2e-3, betas=(0.0, 0.9)),
                   latent_critic_optimizer=functools.partial(torch.optim.Adam, lr=2e-3, betas=(0.0, 0.9)))
    data = PointsDataModule(num_samples=512, batch_size=64, offset=3.0)
    data.setup()
    codes = data.train_set.tensors["x"]

    def gap() -> float:
        return float((model.sample_latents(512, torch.Generator().manual_seed(0)).mean(0) - codes.mean(0)).norm())

    before = gap()
    quiet_trainer(tmp_path, max_steps=1200).fit(model, data)
    assert before > 3.5
    # P-GEN and its critic oscillate around the codes (0.5-0.9 away between 1,200 and 6,000 steps with torch 2.14,
    # from 4.4): assert it travelled most of the way, not where the oscillation happens to stop
    assert gap() < 0.3 * before
    torch.testing.assert_close(model.encoder.weight, torch.eye(2))  # the frozen encoder stayed put


# ------------------------------------------------------------------------ decoder batch-norm statistics

def test_frozen_running_stats_keeps_batch_statistics_and_leaves_the_buffers_exactly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net(torch.randn(16, 3))  # running statistics away from their initial values
    twin = copy.deepcopy(net)
    before = {name: buffer.clone() for name, buffer in net.named_buffers()}
    x = torch.randn(16, 3) * 5 + 2
    with frozen_running_stats(net):
        out = net(x)
        out.square().sum().backward()
    for name, buffer in net.named_buffers():
        assert torch.equal(buffer, before[name]), name
    torch.testing.assert_close(out, twin(x), rtol=0, atol=0)  # the same train-mode output (batch statistics)
    assert net[0].weight.grad is not None and net[1].track_running_stats
    assert int(twin[1].num_batches_tracked) == 2  # unfrozen, the same forward counts and moves them


@pytest.mark.parametrize("cls, decodes_per_outer_step", [(FlexAESR, 3), (FlexAE, 2)])
def test_decoder_running_statistics_mix_each_decoder_input_once_per_outer_step(cls, decodes_per_outer_step,
                                                                               tmp_path):
    """Frozen networks (learning rate 0), so only the decoder's batch-norm statistics change; a cumulative average
    (momentum None) makes the running variance the plain mean of the batch variances it saw. The authors' graph
    mixes codes (reconstruction), P-GEN samples and interpolations (SR) once each per update. Decoding
    interpolations in every critic step too gave codes 1 and interpolations 6 of every 7 updates: eval-time
    statistics far narrower than the codes and prior samples that generation decodes."""
    torch.manual_seed(0)
    frozen = functools.partial(torch.optim.SGD, lr=0.0)
    decoder = nn.Sequential(identity_linear(2), nn.BatchNorm1d(2, momentum=None))
    model = cls((2,), (-5.0, 5.0), latent_dim=2, encoder=lambda s, m: identity_linear(2),
                decoder=lambda m, s, r: decoder, prior_network=lambda m_in, s, r: identity_linear(2),
                latent_critic=lambda s: MLPCritic(s, 16, 1), image_critic=lambda s: MLPCritic(s, 16, 1),
                max_outer_steps=20, **{f"{name}_optimizer": frozen for name in
                                       ("autoencoder", "latent_critic", "image_critic", "smoothing", "prior",
                                        "encoder")})
    data = PointsDataModule(num_samples=2048, batch_size=256)
    data.setup()
    quiet_trainer(tmp_path, max_epochs=1000).fit(model, data)
    assert model.outer_step == 20
    batch_norm = model.decoder[1]
    assert int(batch_norm.num_batches_tracked) == decodes_per_outer_step * 20
    codes_variance = data.train_set.tensors["x"].var(0).mean().item()  # the identity encoder's codes (about 1/2)
    prior_variance = 1.0  # the identity P-GEN's N(0, I) noise
    interpolation_variance = 2 / 3 * codes_variance  # E[γ² + (1 − γ)²] = 2/3 for independent partners
    if cls is FlexAESR:
        expected = (codes_variance + prior_variance + interpolation_variance) / 3
        old = (codes_variance + 6 * interpolation_variance) / 7
        assert abs(expected - old) > 0.15
    else:
        expected = (codes_variance + prior_variance) / 2
    assert batch_norm.running_var.mean().item() == pytest.approx(expected, abs=0.05)


# ----------------------------------------------------------------------------------------------- resume

def test_resume_restores_all_networks_optimizers_and_the_cycle(tmp_path):
    def run(root, ckpt_path=None):
        L.seed_everything(7)
        model = FlexAESR((1, 8, 8), (-1.0, 1.0), latent_dim=4, n_critic=2, **TINY_FLEXAE)
        checkpoint = ModelCheckpoint(dirpath=tmp_path / root, every_n_train_steps=1, save_top_k=-1, filename="{step}")
        trainer = quiet_trainer(tmp_path / root, max_steps=30, callbacks=[checkpoint], enable_checkpointing=True)
        trainer.fit(model, ImagesDataModule(batch_size=8), ckpt_path=ckpt_path, weights_only=False)
        return model, trainer

    full, full_trainer = run("a")
    # 8 optimizer steps per outer step (1 + 2 x 2 + 3); step 11 is mid-epoch and mid-cycle (after a critic pair)
    saved = torch.load(tmp_path / "a" / "step=11.ckpt", weights_only=False)  # hparams hold functools.partials
    assert saved["zoo"]["schedule"] == {"step": 1, "position": 2}
    assert len(saved["optimizer_states"]) == 6
    resumed, resumed_trainer = run("b", ckpt_path=tmp_path / "a" / "step=11.ckpt")
    assert (resumed.outer_step, resumed.cycle_position) == (full.outer_step, full.cycle_position)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for first, second in zip(full_trainer.optimizers, resumed_trainer.optimizers, strict=True):
        for state_a, state_b in zip(first.state.values(), second.state.values(), strict=True):
            for key in state_a:
                torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)
    loaded = FlexAESR.load_from_checkpoint(tmp_path / "a" / "step=11.ckpt", weights_only=False)
    assert loaded.sample(3).shape == (3, 1, 8, 8)
    assert (loaded.outer_step, loaded.cycle_position) == (1, 2)


# ------------------------------------------------------------------------------------ pieces and errors

def test_priors():
    gaussian = GaussianPrior(4, scale=2.0)
    draw = gaussian.sample(20_000, torch.Generator().manual_seed(0))
    assert draw.shape == (20_000, 4) and draw.std().item() == pytest.approx(2.0, rel=0.02)
    learned = LearnedPrior(6, noise_dim=3)
    assert learned.network.net[0].in_features == 3 and learned.sample(5).shape == (5, 6)
    assert not learned.sample(2).requires_grad
    torch.testing.assert_close(learned.sample(4, torch.Generator().manual_seed(1)),
                               learned.sample(4, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="noise to shape"):
        LearnedPrior(6, network=lambda m_in, s, r: MLPGenerator(m_in, (5,), None, 8, 1))


def test_autoencoder_api_and_sampling_follow_the_prior():
    model = WAE((1, 28, 28), latent_dim=8)
    x = torch.rand(3, 1, 28, 28)
    assert model.encode(x).shape == (3, 8)
    assert model.reconstruct(x).shape == x.shape and 0 <= model.reconstruct(x).min() <= model.reconstruct(x).max() <= 1
    assert model.sample(5).shape == (5, 1, 28, 28)
    torch.testing.assert_close(model.sample_latents(4, torch.Generator().manual_seed(3)),
                               torch.randn(4, 8, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="encode expects"):
        model.encode(torch.rand(2, 1, 32, 32))


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="regularizer"):
        WAE((1, 28, 28), regularizer="kl")
    with pytest.raises(ValueError, match="penalty_weight"):
        WAE((1, 28, 28), penalty_weight=-1)
    with pytest.raises(ValueError, match="n_critic"):
        FlexAE((1, 28, 28), n_critic=0)
    with pytest.raises(ValueError, match="lambda_prior"):
        FlexAE((1, 28, 28), lambda_prior=-1)
    with pytest.raises(ValueError, match="multiple of 4"):
        FlexAE((1, 30, 30))
    with pytest.raises(ValueError, match="encoder returns codes"):
        FlexAE((1, 28, 28), latent_dim=8, encoder=lambda s, m: InfoGANEncoder(s, 4))
    with pytest.raises(ValueError, match="latent critic must return one score"):
        FlexAE((1, 28, 28), latent_dim=8, latent_critic=lambda s: nn.Linear(8, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        quiet_trainer("unused", max_steps=1).fit(WAE((4,), (-2.0, 2.0), latent_dim=2),
                                                 PointsDataModule(dim=4, batch_size=1, num_samples=8))


def test_latent_manifold_data():
    data = LatentManifold(num_samples=300, num_val_samples=10, num_test_samples=20, map_seed=3)
    data.setup()
    train = data.train_set.tensors
    assert train["x"].shape == (300, 128) and train["latent"].shape == (300, 5)
    torch.testing.assert_close(train["x"], data.map(train["latent"]))
    again = LatentManifold(num_samples=300, map_seed=3, seed=1)
    again.setup()
    torch.testing.assert_close(again.map(train["latent"]), train["x"])  # one map per map_seed
    assert not torch.equal(again.train_set.tensors["latent"], train["latent"])
    # the image of a 5-D latent under the map has local dimension 5: the Jacobian has rank 5
    jacobian = torch.autograd.functional.jacobian(data.map, train["latent"][0])
    assert torch.linalg.matrix_rank(jacobian).item() == 5
    mixture = LatentManifold(latent="mixture", num_samples=800, components=4, radius=2.0, component_std=0.01)
    mixture.setup()
    latent, label = mixture.train_set.tensors["latent"], mixture.train_set.tensors["label"]
    angles = 2 * math.pi * label.float() / 4
    torch.testing.assert_close(latent, 2 * torch.stack([angles.cos(), angles.sin()], 1), atol=0.06, rtol=0)
    with pytest.raises(ValueError, match="latent must be one of"):
        LatentManifold(latent="uniform")


# ---------------------------------------------------------------------------------------------------- CLI

AE_METHODS = ("flexae", "flexae_sr", "wae_gan", "wae_mmd")


def test_sized_config(config: str, directory) -> str:
    """The config with test-sized Evaluation and NearestNeighbours (pixels, not Inception at 299 px)."""
    import yaml

    from genzoo.cli import config_with_callback_args
    from tests.helpers import prepared_config

    content = yaml.safe_load(open(config))
    evaluation = next(c for c in content["trainer"]["callbacks"] if c["class_path"] == "genzoo.callbacks.Evaluation")
    heavy = evaluation["init_args"]["extractor"] == "inception"
    small = prepared_config(config, directory, **({"extractor": "pixels"} if heavy else {}))
    return str(config_with_callback_args(small, directory, "genzoo.callbacks.NearestNeighbours", n_train=32,
                                         **({"extractor": "pixels"} if heavy else {})))


test_sized_config.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("method", AE_METHODS)
def test_autoencoders_under_bf16_and_two_process_ddp(method, tmp_path, monkeypatch):
    from genzoo.cli import run_cli
    from tests.helpers import ddp_run_parameters
    from tests.test_cli import REPO, quick_args

    monkeypatch.chdir(REPO)
    config = test_sized_config(f"configs/{method}/digits.yaml", tmp_path / "prepared")
    cli = run_cli(["fit", "--config", config, *quick_args(tmp_path / "bf16", steps=16),
                   "--data.init_args.batch_size", "16", "--trainer.precision", "bf16-mixed"])
    assert cli.trainer.precision == "bf16-mixed" and cli.model.outer_step >= 1
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    rank0 = ddp_run_parameters(["--config", config, *quick_args(tmp_path / "ddp", steps=16),
                                "--data.init_args.batch_size", "16"], tmp_path)
    assert any(name.startswith("encoder.") for name in rank0)
