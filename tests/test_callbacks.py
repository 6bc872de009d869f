"""Tests for callbacks/: mode metrics, sample grids/scatters and logger-agnostic image logging."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from genzoo.callbacks import (
    ModeCoverage,
    SampleGrid,
    figure_to_array,
    grid_mode_metrics,
    isolated_sample,
    log_image,
)

GRID_MODES = torch.tensor([[x, y] for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)])


# ----------------------------------------------------------------------------------------------------------
# Test doubles: a model implementing only the zoo's sampling API, and dict-sample data.
# ----------------------------------------------------------------------------------------------------------

class DummyGenerator(L.LightningModule):
    """Generates through a fixed random linear map (a buffer, never trained), so samples from given latents
    never change; training only moves an unrelated parameter."""

    def __init__(self, data_shape: tuple[int, ...] = (1, 8, 8), latent_dim: int = 4,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        self.value_range = value_range
        weight = torch.randn(latent_dim, math.prod(data_shape), generator=torch.Generator().manual_seed(0))
        self.register_buffer("weight", weight)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        x = z.to(self.device) @ self.weight
        if len(self.data_shape) == 3:
            x = torch.tanh(x)  # images live in value_range (-1, 1)
        return x.reshape(len(z), *self.data_shape)

    def sample(self, n: int) -> torch.Tensor:
        return self.generate(self.sample_latents(n))

    def training_step(self, batch, batch_idx):
        return (self.dummy - batch["x"].float().mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TwoOptimizerGenerator(DummyGenerator):
    """Steps two optimizers per batch, like the GANs, so ``global_step`` advances by 2 per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.other = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        for optimizer, param in zip(self.optimizers(), (self.dummy, self.other), strict=True):
            optimizer.zero_grad()
            self.manual_backward((param - batch["x"].float().mean()) ** 2)
            optimizer.step()

    def configure_optimizers(self):
        return [torch.optim.SGD([self.dummy], lr=0.1), torch.optim.SGD([self.other], lr=0.1)]


class PointSet(Dataset):
    def __init__(self, points: torch.Tensor) -> None:
        self.points = points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.points[index]}


def grid_points(n: int, std: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``n`` samples from the 25-Gaussian grid with a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(GRID_MODES), (n,), generator=generator)
    return GRID_MODES[index] + std * torch.randn(n, 2, generator=generator)


class GridData(L.LightningDataModule):
    """Stands in for the zoo's 2-D grid datamodule: dict samples plus ``modes`` and ``std``."""

    def __init__(self, n: int = 512, std: float = 0.05) -> None:
        super().__init__()
        self.modes, self.std = GRID_MODES, std
        self.train_set: Dataset | None = None
        self.n = n

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = PointSet(grid_points(self.n, self.std))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=32, shuffle=True)


def fit(tmp_path: Path, model: L.LightningModule, callbacks: list, logger=False, max_steps: int = 4,
        datamodule: L.LightningDataModule | None = None) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=logger, callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, log_every_n_steps=1)
    if datamodule is None:
        trainer.fit(model, train_dataloaders=DataLoader(PointSet(torch.randn(256, 2)), batch_size=32))
    else:
        trainer.fit(model, datamodule=datamodule)
    return trainer


def grid_size(n: int, height: int, width: int, padding: int = 2) -> tuple[int, int]:
    """(H, W) of ``torchvision.utils.make_grid`` with ``nrow = ceil(sqrt(n))``, per its formula."""
    columns = min(math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / columns)
    return rows * (height + padding) + padding, columns * (width + padding) + padding


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ----------------------------------------------------------------------------------------------------------
# grid_mode_metrics
# ----------------------------------------------------------------------------------------------------------

def reference_mode_metrics(samples, modes, std, threshold=3.0) -> dict:
    """Independent, loop-based NumPy version of the PacGAN protocol."""
    samples, modes = np.asarray(samples, dtype=float), np.asarray(modes, dtype=float)
    counts = np.zeros(len(modes))
    for x in samples:
        distances = [math.sqrt(sum((x[d] - mu[d]) ** 2 / std**2 for d in range(2))) for mu in modes]
        nearest = int(np.argmin(distances))
        if distances[nearest] < threshold:
            counts[nearest] += 1
    total = counts.sum()
    if total == 0:
        reverse_kl = math.log(len(modes))
    else:
        reverse_kl = sum(c / total * math.log(len(modes) * c / total) for c in counts if c > 0)
    return {"modes": int((counts > 0).sum()), "hq_fraction": total / len(samples), "reverse_kl": reverse_kl}


def test_true_grid_samples_cover_all_modes():
    metrics = grid_mode_metrics(grid_points(2500), GRID_MODES, std=0.05)
    assert metrics["modes"] == 25
    assert metrics["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.02)  # P(chi2_2 < 9)
    assert 0 <= metrics["reverse_kl"] < 0.02
    assert isinstance(metrics["modes"], int)
    assert all(isinstance(metrics[k], float) for k in ("hq_fraction", "reverse_kl"))


def test_collapse_to_five_modes():
    samples = GRID_MODES[:5].repeat(100, 1) + 0.01  # 100 samples at each of 5 modes, all high quality
    metrics = grid_mode_metrics(samples, GRID_MODES, std=0.05)
    assert metrics == {"modes": 5, "hq_fraction": 1.0, "reverse_kl": pytest.approx(math.log(5), abs=1e-6)}


def test_uneven_histogram_counts_only_high_quality_samples():
    # 3 good samples at mode 0, 1 at mode 1, and 4 low-quality ones near mode 2: p = (3/4, 1/4)
    samples = torch.tensor([[-4.0, -4.0]] * 3 + [[-4.0, -2.0]] + [[-4.0, -0.5]] * 4)
    metrics = grid_mode_metrics(samples, GRID_MODES, std=0.05)
    expected_kl = 0.75 * math.log(25 * 0.75) + 0.25 * math.log(25 * 0.25)
    assert metrics == {"modes": 2, "hq_fraction": 0.5, "reverse_kl": pytest.approx(expected_kl, abs=1e-9)}


def test_samples_far_from_all_modes():
    metrics = grid_mode_metrics(torch.full((100, 2), 50.0), GRID_MODES, std=0.05)
    # no histogram exists: reverse_kl is the worst finite value, log M (a point mass)
    assert metrics == {"modes": 0, "hq_fraction": 0.0, "reverse_kl": pytest.approx(math.log(25))}


@pytest.mark.parametrize("seed", range(5))
def test_mode_metrics_match_reference(seed):
    rng = np.random.default_rng(seed)
    num_modes, std = int(rng.integers(2, 10)), float(rng.uniform(0.1, 0.5))
    modes = rng.uniform(-3, 3, size=(num_modes, 2))
    near = modes[rng.integers(num_modes, size=200)] + rng.normal(scale=2 * std, size=(200, 2))
    anywhere = rng.uniform(-5, 5, size=(100, 2))
    samples = np.concatenate([near, anywhere])
    threshold = float(rng.choice([1.0, 2.0, 3.0]))
    ours = grid_mode_metrics(torch.from_numpy(samples).float(), torch.from_numpy(modes).float(), std, threshold)
    # float32 inputs: compare against the reference on exactly those values
    expected = reference_mode_metrics(samples.astype(np.float32), modes.astype(np.float32), std, threshold)
    assert ours["modes"] == expected["modes"]
    assert ours["hq_fraction"] == pytest.approx(expected["hq_fraction"])
    assert ours["reverse_kl"] == pytest.approx(expected["reverse_kl"], abs=1e-9)


def test_mode_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="std"):
        grid_mode_metrics(torch.zeros(3, 2), GRID_MODES, std=0.0)
    with pytest.raises(ValueError, match="2"):
        grid_mode_metrics(torch.zeros(3, 3), GRID_MODES, std=0.05)


# ----------------------------------------------------------------------------------------------------------
# Logging helpers
# ----------------------------------------------------------------------------------------------------------

def test_figure_to_array_renders_and_closes_pyplot_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot([0, 1], [0, 1])
    array = figure_to_array(fig)
    assert array.dtype == np.uint8 and array.shape == (100, 150, 3)
    assert fig.number not in plt.get_fignums()


def test_log_image_uses_image_loggers_and_always_writes_a_png(tmp_path):
    class RecordingTensorBoard(TensorBoardLogger):
        """Records add_image calls instead of writing events."""

        @property
        def experiment(self):
            return SimpleNamespace(add_image=lambda *args, **kwargs: calls.append((args, kwargs)))

    calls = []
    # tensorboard may not be installed, and its __init__ requires it: build the instance without __init__
    tensorboard = RecordingTensorBoard.__new__(RecordingTensorBoard)
    image = torch.rand(3, 5, 7)
    trainer = SimpleNamespace(is_global_zero=True, global_step=7, default_root_dir=str(tmp_path),
                              loggers=[tensorboard])
    path = log_image(trainer, "a/b", image)  # to the image logger and as a PNG in the run directory
    (key, array), kwargs = calls[0]
    assert key == "a/b" and array.shape == (5, 7, 3) and kwargs == {"global_step": 7, "dataformats": "HWC"}
    assert path == tmp_path / "images" / "a_b_step7.png"
    assert log_image(trainer, "a/b", image, step=9, save_png=False) is None
    np.testing.assert_array_equal(read_png(path), (image * 255).round().byte().permute(1, 2, 0).numpy())

    trainer.is_global_zero = False
    assert log_image(trainer, "a/b", image, step=8) is None
    assert not (tmp_path / "images" / "a_b_step8.png").exists()


def test_isolated_sample_leaves_global_rng_untouched():
    model = DummyGenerator(data_shape=(2,))
    state = torch.get_rng_state()
    isolated_sample(model, 10)
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------------------------------------
# SampleGrid
# ----------------------------------------------------------------------------------------------------------

def test_sample_grid_without_logger_writes_identical_fixed_noise_grids(tmp_path):
    callback = SampleGrid(num_samples=64, every_n_steps=2, every_n_epochs=None, seed=3)
    fit(tmp_path, DummyGenerator(), [callback], logger=False, max_steps=4)
    files = sorted((tmp_path / "images").glob("*.png"))
    assert [f.name for f in files] == ["samples_grid_step2.png", "samples_grid_step4.png"]
    first, second = (read_png(f) for f in files)
    assert first.shape[:2] == grid_size(64, 8, 8) == (82, 82)
    np.testing.assert_array_equal(first, second)  # same latents, unchanged generator -> same grid
    expected_z = DummyGenerator().sample_latents(64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(callback.fixed_z, expected_z)


def test_sample_grid_with_csv_logger_and_step_jumps(tmp_path):
    # global_step goes 2, 4, 6, 8, 10: buckets of 3 are crossed at steps 4, 6 and 10 (also the end)
    logger = CSVLogger(tmp_path)
    callback = SampleGrid(num_samples=10, every_n_steps=3, every_n_epochs=None)
    fit(tmp_path, TwoOptimizerGenerator(), [callback], logger=logger, max_steps=10)
    image_dir = tmp_path / "images"  # the run directory's, whatever the logger
    names = sorted(f.name for f in image_dir.glob("*.png"))
    assert names == ["samples_grid_step10.png", "samples_grid_step4.png", "samples_grid_step6.png"]
    assert read_png(image_dir / "samples_grid_step4.png").shape[:2] == grid_size(10, 8, 8) == (32, 42)


def test_sample_grid_logs_every_epoch_and_at_train_end(tmp_path):
    # 256 points / batch 32 = 8 batches per epoch; 12 steps = one full epoch plus the end of training
    fit(tmp_path, DummyGenerator(value_range=(0.0, 1.0)), [SampleGrid(num_samples=4)], max_steps=12)
    names = sorted(f.name for f in (tmp_path / "images").glob("*.png"))
    assert names == ["samples_grid_step12.png", "samples_grid_step8.png"]


def test_sample_grid_with_offline_wandb(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    try:
        fit(tmp_path, DummyGenerator(), [SampleGrid(num_samples=16, every_n_steps=2, every_n_epochs=None)],
            logger=logger, max_steps=2)
        run_files = Path(logger.experiment.dir)
    finally:
        logger.experiment.finish()
    media = list((run_files / "media").rglob("*.png"))
    assert media, f"no image in {run_files}"
    assert (tmp_path / "images" / "samples_grid_step2.png").is_file()  # and the run directory keeps a PNG


def test_scatter_for_2d_data_with_real_points(tmp_path):
    callback = SampleGrid(every_n_steps=None, every_n_epochs=None, num_points=500, num_real_points=300)
    fit(tmp_path, DummyGenerator(data_shape=(2,)), [callback], datamodule=GridData(), max_steps=3)
    image = read_png(tmp_path / "images" / "samples_scatter_step3.png")
    assert image.shape == (500, 500, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2  # something was drawn
    assert callback.real_points(None).shape == (300, 2)  # cached subsample of the training set


def test_scatter_without_datamodule_has_no_real_points(tmp_path):
    callback = SampleGrid(every_n_epochs=None)
    fit(tmp_path, DummyGenerator(data_shape=(2,)), [callback], max_steps=2)
    assert (tmp_path / "images" / "samples_scatter_step2.png").exists()
    assert callback.real_points(SimpleNamespace(datamodule=None)) is None


# ----------------------------------------------------------------------------------------------------------
# ModeCoverage
# ----------------------------------------------------------------------------------------------------------

def test_mode_coverage_logs_metrics_to_csv(tmp_path):
    logger = CSVLogger(tmp_path)
    callback = ModeCoverage(num_samples=500, every_n_steps=2, every_n_epochs=None)
    fit(tmp_path, DummyGenerator(data_shape=(2,)), [callback], logger=logger, datamodule=GridData(), max_steps=4)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("eval/modes")]
    assert [int(row["step"]) for row in rows] == [2, 4]
    assert [entry["step"] for entry in callback.history] == [2, 4]
    last = rows[-1]
    assert float(last["eval/modes"]) == callback.latest["modes"]
    assert float(last["eval/hq_fraction"]) == pytest.approx(callback.latest["hq_fraction"])
    assert float(last["eval/reverse_kl"]) == pytest.approx(callback.latest["reverse_kl"])


def test_mode_coverage_with_explicit_modes_and_no_logger(tmp_path):
    # a "generator" whose samples all sit within 3 std of one of these 4 modes
    model = DummyGenerator(data_shape=(2,), latent_dim=2)
    model.weight.copy_(torch.eye(2) * 1e-3)
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    callback = ModeCoverage(modes=modes, std=1.0, num_samples=100)
    fit(tmp_path, model, [callback], max_steps=2)
    assert callback.latest == {"modes": 1, "hq_fraction": 1.0, "reverse_kl": pytest.approx(math.log(4))}


def test_mode_coverage_without_modes_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="ModeCoverage is missing modes and std"):
        fit(tmp_path, DummyGenerator(data_shape=(2,)), [ModeCoverage()], max_steps=1)
    with pytest.raises(ValueError, match="ModeCoverage is missing std"):
        fit(tmp_path, DummyGenerator(data_shape=(2,)), [ModeCoverage(modes=GRID_MODES)], max_steps=1)
