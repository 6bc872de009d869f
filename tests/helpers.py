"""Small shared pieces for tests: a tiny in-memory datamodule and a quiet trainer factory."""

from __future__ import annotations

import lightning as L
import torch

from datamodules.base import TensorDictDataset, ZooDataModule


class PointsDataModule(ZooDataModule):
    """Deterministic 2-D points (a ring of 4 Gaussians), small enough for step-exact tests."""

    arbitrary_value_range = True

    def __init__(self, num_samples: int = 256, batch_size: int = 16, seed: int = 0, dim: int = 2,
                 offset: float = 0.0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, value_range=(-2.0, 2.0))
        self.num_samples = num_samples
        self.dim = dim
        self.offset = offset  # shifts the whole ring, e.g. to test that samples follow the data

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def build_datasets(self):
        g = torch.Generator().manual_seed(self.seed)
        centres = torch.eye(self.dim).repeat(2, 1) * torch.tensor([1.0, -1.0]).repeat_interleave(self.dim)[:, None]
        x = centres[torch.randint(len(centres), (self.num_samples,), generator=g)]
        x = x + 0.05 * torch.randn(self.num_samples, self.dim, generator=g) + self.offset
        return TensorDictDataset(x=x), None, None


def quiet_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, default_root_dir=str(tmp_path))
    defaults.update(kwargs)
    return L.Trainer(**defaults)


class DumpParameters(L.Callback):
    """Writes each rank's final parameters to ``<dir>/params_rank<r>.pt`` (DDP sync checks). Buffers such as
    batch-norm running statistics are left out: DDP re-broadcasts them from rank 0 at every step."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.named_parameters()}
        torch.save(state, f"{self.directory}/params_rank{trainer.global_rank}.pt")


class ImagesDataModule(ZooDataModule):
    """Random 1x8x8 'images' in [-1, 1]: for precision and DDP checks of the image networks."""

    def __init__(self, num_samples: int = 64, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.num_samples = num_samples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def build_datasets(self):
        g = torch.Generator().manual_seed(self.seed)
        return TensorDictDataset(x=torch.rand(self.num_samples, 1, 8, 8, generator=g) * 2 - 1), None, None
