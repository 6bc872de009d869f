"""Autoencoder callbacks (latent interpolation, nearest training neighbours) and the reconstruction FID, on a
stub model with the autoencoder API."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from torch import nn

from genzoo.callbacks import Evaluation, LatentInterpolation, NearestNeighbours
from genzoo.evaluation import Collective, Evaluator, build_extractor
from genzoo.evaluation import metrics as M
from genzoo.evaluation.features import quantised_pixels, subset_indices
from genzoo.wgan import WGANGP
from tests.helpers import ImagesDataModule, SplitImages, quiet_trainer

VALUE_RANGE = (-1.0, 1.0)


class StubAutoencoder(L.LightningModule):
    """The autoencoder API on linear maps, or on identities (a perfect autoencoder) with ``identity=True``."""

    def __init__(self, data_shape=(1, 8, 8), latent_dim: int = 4, identity: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.data_shape, self.value_range = tuple(data_shape), VALUE_RANGE
        dim = math.prod(self.data_shape)
        self.latent_dim = dim if identity else latent_dim
        torch.manual_seed(seed)
        self.encoder = nn.Identity() if identity else nn.Linear(dim, latent_dim)
        self.decoder = nn.Identity() if identity else nn.Linear(latent_dim, dim)

    def training_step(self, batch, batch_idx):
        x = batch["x"].flatten(1)
        return (self.decoder(self.encoder(x)) - x).square().mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    @torch.no_grad()
    def encode(self, x, batch_size=1000):
        torch.rand(())  # a stochastic encoder's draw (VAE-style): callbacks must isolate the global RNG
        return torch.cat([self.encoder(chunk.to(self.device).flatten(1)) for chunk in x.split(batch_size)])

    @torch.no_grad()
    def decode(self, z, batch_size=1000):
        out = torch.cat([self.decoder(chunk.to(self.device)) for chunk in z.split(batch_size)])
        return out.float().unflatten(1, self.data_shape)

    def reconstruct(self, x, batch_size=1000):
        return self.decode(self.encode(x, batch_size), batch_size)

    def sample_latents(self, n, generator=None):
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def generate(self, z, batch_size=1000):
        return self.decode(z, batch_size)

    def sample(self, n):
        return self.generate(self.sample_latents(n))


class CopyingModel(StubAutoencoder):
    """Samples are exact copies of ``bank`` images: latent ``[j]`` generates ``bank[j]``."""

    def __init__(self, bank: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("bank", bank.clone())

    def sample_latents(self, n, generator=None):
        return torch.randint(len(self.bank), (n, 1), generator=generator).float().to(self.device)

    def generate(self, z, batch_size=1000):
        return self.bank[z[:, 0].long()].float()


def png(tmp_path, key: str, step: int):
    path = tmp_path / "images" / f"{key}_step{step}.png"
    assert path.is_file(), sorted(p.name for p in (tmp_path / "images").glob("*"))
    with Image.open(path) as image:
        return image.size


# ------------------------------------------------------------------------------------------ interpolation

def test_interpolation_logs_a_grid_whose_ends_decode_the_real_pairs(tmp_path):
    dm = SplitImages(num_samples=64)
    model = StubAutoencoder()
    callback = LatentInterpolation(num_pairs=3, num_steps=4, every_n_steps=1, every_n_epochs=None)
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[callback])
    trainer.fit(model, dm)
    for step in (1, 2):  # rows: 3 pairs; columns: real a, 4 decoded points, real b; 8 px images, 2 px padding
        assert png(tmp_path, "autoencoder_interpolation", step) == (6 * 10 + 2, 3 * 10 + 2)

    model.train()
    rng = torch.get_rng_state()
    grid = callback.interpolation_grid(trainer, model)
    callback.log_now(trainer, model)
    assert torch.equal(torch.get_rng_state(), rng), "the callback consumed global randomness"
    assert model.training and model.encoder.training, "the callback changed the model's train/eval mode"

    assert grid.shape == (3, 6, 1, 8, 8)
    pairs = callback.real_pairs(trainer)
    test_x = dm.test_set.tensors["x"]
    for a, b in pairs:
        assert not torch.equal(a, b)
        assert any(torch.equal(a, t) for t in test_x) and any(torch.equal(b, t) for t in test_x)
    assert torch.equal(grid[:, 0], pairs[:, 0]) and torch.equal(grid[:, -1], pairs[:, 1])
    ends = model.reconstruct(pairs.flatten(0, 1)).unflatten(0, (3, 2))
    torch.testing.assert_close(grid[:, 1], ends[:, 0])
    torch.testing.assert_close(grid[:, -2], ends[:, 1])
    for i, t in enumerate(torch.linspace(0, 1, 4)):  # the decoder is affine: decoded points are convex combinations
        torch.testing.assert_close(grid[:, 1 + i], (1 - t) * ends[:, 0] + t * ends[:, 1])


def test_interpolation_errors_are_clear():
    with pytest.raises(ValueError, match="num_pairs >= 1 and num_steps >= 2"):
        LatentInterpolation(num_steps=1)
    with pytest.raises(ValueError, match="num_pairs >= 1"):
        LatentInterpolation(num_pairs=0)
    with pytest.raises(TypeError, match=r"encode\(\) and decode\(\); WGANGP"):
        LatentInterpolation().setup(SimpleNamespace(is_global_zero=True), WGANGP(latent_dim=8, data_shape=(1, 8, 8)),
                                    "fit")
    with pytest.raises(ValueError, match=r"no 'test' split \(available: \['train'\]\)"):
        LatentInterpolation().real_pairs(SimpleNamespace(datamodule=ImagesDataModule()))


# ------------------------------------------------------------------------------------- nearest neighbours

def test_nearest_neighbours_find_the_copied_training_images_in_order():
    dm = SplitImages(num_samples=64)
    dm.setup()
    subset = subset_indices(64, 50, seed=1)  # n_train=50 of the 64 training images, seed 1
    model = CopyingModel(dm.train_set.tensors["x"][subset])
    callback = NearestNeighbours(num_samples=6, k=4, extractor="classifier:digits", n_train=50, seed=1)
    trainer = SimpleNamespace(datamodule=dm)
    found = callback.nearest_neighbours(trainer, model)
    assert set(found) == {"pixels", "features"}
    copied = torch.tensor(subset)[callback.fixed_z[:, 0].long()]
    samples = quantised_pixels(model.generate(callback.fixed_z), VALUE_RANGE).float() / 255
    train_pixels = quantised_pixels(dm.train_set.tensors["x"], VALUE_RANGE).float() / 255
    for space, neighbours in found.items():
        assert torch.equal(neighbours.indices[:, 0], copied), space
        assert (neighbours.distances[:, 1:] >= neighbours.distances[:, :-1]).all(), space
        assert torch.equal(neighbours.samples, samples)
        assert torch.equal(neighbours.images, train_pixels[neighbours.indices])
        assert neighbours.distances.shape == (6, 4) and set(neighbours.indices.flatten().tolist()) <= set(subset)
    pixels = found["pixels"]
    assert (pixels.distances[:, 0] == 0).all()
    brute = (samples.flatten(1)[:, None] - train_pixels[subset].flatten(1)[None]).square().sum(-1).sqrt()
    torch.testing.assert_close(pixels.distances, brute.topk(4, largest=False).values)
    assert found["features"].distances[:, 0].abs().max() < 1e-4

    callback.chunk_size = 7  # chunked search: the same answer
    chunked = callback.nearest_neighbours(trainer, model)["pixels"]
    assert torch.equal(chunked.indices, pixels.indices) and torch.equal(chunked.distances, pixels.distances)

    only_pixels = NearestNeighbours(num_samples=6, k=4, extractor="pixels", n_train=50, seed=1)
    assert set(only_pixels.nearest_neighbours(trainer, model)) == {"pixels"}
    with pytest.raises(ValueError, match="num_samples, k and n_train >= 1"):
        NearestNeighbours(k=0)


def test_nearest_neighbours_log_both_panels_during_fit(tmp_path):
    callback = NearestNeighbours(num_samples=4, k=3, extractor="classifier:digits", n_train=30, every_n_steps=2,
                                 every_n_epochs=None)
    model = StubAutoencoder()
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[callback])
    trainer.fit(model, SplitImages(num_samples=64))
    for name in ("pixels", "features"):  # rows: 4 samples; columns: the sample and 3 neighbours
        assert png(tmp_path, f"autoencoder_nearest_{name}", 2) == (4 * 10 + 2, 4 * 10 + 2)
    model.train()
    rng = torch.get_rng_state()
    fresh = NearestNeighbours(num_samples=4, k=3, extractor="classifier:digits", n_train=30)
    fresh.log_now(trainer, model)  # extracts the training subset: a DataLoader draws a seed
    assert torch.equal(torch.get_rng_state(), rng), "the callback consumed global randomness"
    assert model.training and model.decoder.training


# ------------------------------------------------------------------------------------ reconstruction FID

def evaluator(**kwargs) -> Evaluator:
    settings = dict(extractor="pixels", metrics=("reconstruction_fid",), n_samples=8, reference_split="test",
                    n_reference=30, batch_size=7, seed=2, cache_dir=None)
    return Evaluator(**{**settings, **kwargs})


def test_reconstruction_fid_is_the_frechet_distance_of_reconstructions_to_the_real_subset():
    dm = SplitImages(num_samples=64)
    dm.setup()
    model = StubAutoencoder()
    result = evaluator().evaluate(model, dm)
    x = torch.stack([dm.test_set[i]["x"] for i in subset_indices(40, 30, seed=2)])
    extractor = build_extractor("pixels")
    expected = M.frechet_distance(extractor(model.reconstruct(x), VALUE_RANGE), extractor(x, VALUE_RANGE))
    assert result.values["reconstruction_fid"] == pytest.approx(expected, rel=1e-6)
    assert result.protocol["reconstruction_fid"] == {"n": 30, "split": "test"}

    perfect = evaluator().evaluate(StubAutoencoder(identity=True), dm).values["reconstruction_fid"]
    assert abs(perfect) < 1e-6 < 1e-3 < expected

    with pytest.raises(ValueError, match="reconstruction_fid metric needs a model with reconstruct.*WGANGP"):
        evaluator().evaluate(WGANGP(latent_dim=8, data_shape=(1, 8, 8)), dm)
    model.reconstruct = lambda x, batch_size=1000: torch.full_like(x, float("nan"))
    with pytest.raises(FloatingPointError, match="reconstructions give non-finite features"):
        evaluator().evaluate(model, dm)


class ShardCollective(Collective):
    """Rank ``rank`` of ``world_size`` whose all_gather returns the shards the ranks gathered so far."""

    def __init__(self, rank: int, world_size: int, shards: dict[int, torch.Tensor]) -> None:
        self.rank, self.world_size, self.shards = rank, world_size, shards

    def all_gather(self, tensor):
        self.shards[self.rank] = tensor
        return torch.stack([self.shards.get(r, torch.zeros_like(tensor)) for r in range(self.world_size)])


def test_sharded_reconstruction_features_gather_into_the_single_process_order():
    dm = SplitImages(num_samples=64)
    model = StubAutoencoder()
    single = evaluator(n_reference=29).reconstructed_features(model, dm, model.device, Collective())
    shards: dict[int, torch.Tensor] = {}
    for rank in (1, 0):  # rank 0 last: it then sees both shards
        gathered = evaluator(n_reference=29).reconstructed_features(model, dm, model.device,
                                                                    ShardCollective(rank, 2, shards))
    assert gathered.features.shape == single.features.shape == (29, 64)
    torch.testing.assert_close(gathered.features, single.features)


def test_the_callback_logs_reconstruction_fid_with_its_protocol(tmp_path):
    evaluation = Evaluation(extractor="pixels", metrics=("fid", "reconstruction_fid"), n_samples=16,
                            reference_split="test", n_reference=16, every_n_steps=2, every_n_epochs=None,
                            cache_dir=None, plots=False)
    trainer = quiet_trainer(tmp_path, max_steps=2, logger=CSVLogger(tmp_path), callbacks=[evaluation])
    trainer.fit(StubAutoencoder(), SplitImages(num_samples=64))
    log_dir = tmp_path / "lightning_logs" / "version_0"
    header = (log_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"eval/fid", "eval/reconstruction_fid"} <= set(header)
    assert evaluation.history[-1]["reconstruction_fid"] > 0
    protocol = yaml.full_load((log_dir / "hparams.yaml").read_text())["evaluation"]
    assert protocol["reconstruction_fid"] == {"n": 16, "split": "test"}
