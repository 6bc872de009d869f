"""Small shared pieces for tests: a tiny in-memory datamodule and a quiet trainer factory."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from genzoo.datamodules.base import TensorDictDataset, ZooDataModule


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


def spread_inception_logits(extractor: torch.nn.Module) -> None:
    """Random fc weights for an Inception extractor of ``random_inception_weights``: its pool3 features have norms
    ~1e-6, so its own fc gives logits ~1e-8 and every Inception Score would be 1; these spread them over O(10)."""
    generator = torch.Generator().manual_seed(0)
    extractor.net.fc.weight.data.copy_(torch.randn(extractor.net.fc.weight.shape, generator=generator) * 1e7)


def quiet_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, default_root_dir=str(tmp_path))
    defaults.update(kwargs)
    return L.Trainer(**defaults)


class DumpParameters(L.Callback):
    """Writes each rank's final parameters to ``<dir>/params_rank<r>.pt`` (DDP sync checks), with the prior's
    buffers (AE-OT's codes and potential, solved on every rank). Other buffers such as batch-norm running
    statistics are left out: DDP re-broadcasts them from rank 0 at every step."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_end(self, trainer, pl_module) -> None:
        buffers = ((k, v) for k, v in pl_module.named_buffers() if k.startswith("prior."))
        named = [*pl_module.named_parameters(), *buffers]
        state = {k: v.detach().cpu().clone() for k, v in named}
        torch.save(state, f"{self.directory}/params_rank{trainer.global_rank}.pt")


def ddp_run_parameters(cli_args: list[str], directory: Path) -> dict[str, torch.Tensor]:
    """``zoo fit`` with ``cli_args`` on 2 CPU processes (gloo DDP); asserts that it succeeds and that both ranks end
    with identical parameters, and returns rank 0's."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "genzoo.cli", "fit", *cli_args, "--trainer.devices", "2", "--trainer.strategy",
               "ddp", "--trainer.callbacks+=tests.helpers.DumpParameters", f"--trainer.callbacks.directory={directory}"]
    result = subprocess.run(command, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(Path(directory) / "params_rank0.pt", weights_only=True)
    rank1 = torch.load(Path(directory) / "params_rank1.pt", weights_only=True)
    assert set(rank0) == set(rank1)
    for name, value in rank0.items():
        torch.testing.assert_close(value, rank1[name], rtol=0, atol=0, msg=f"{name} differs across ranks")
    return rank0


class SplitImages(ZooDataModule):
    """Random 1x8x8 images in [-1, 1] with a train and a test split."""

    def __init__(self, num_samples: int = 96, num_test: int = 40, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.num_samples = num_samples
        self.num_test = num_test

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def build_datasets(self):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.rand(self.num_samples + self.num_test, 1, 8, 8, generator=g) * 2 - 1
        return TensorDictDataset(x=x[: self.num_samples]), None, TensorDictDataset(x=x[self.num_samples:])


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


def wandb_run_contents(run_file) -> tuple[list[dict], dict]:
    """The history rows and the config of an offline W&B run file (``run-<id>.wandb``), decoded without a
    W&B server.

    The file is a LevelDB-style log (32 KiB blocks of records with a 7-byte header: crc32, length, type) of
    ``wandb_internal_pb2.Record`` messages after a 7-byte ``:W&B`` file header."""
    import json
    import struct
    from pathlib import Path

    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data = Path(run_file).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{run_file} is not a W&B run file")
    block, position, pending, rows, config = 32768, 7, b"", [], {}
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # block trailer padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if position + 7 + length > len(data):  # a record W&B's writer process has not finished flushing
            break
        payload = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(pending + payload)
            except DecodeError:  # a record type this protobuf build does not know: skip it
                pending = b""
                continue
            pending = b""
            kind_of_record = record.WhichOneof("record_type")
            if kind_of_record == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
            elif kind_of_record == "config":
                config.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                               for item in record.config.update})
        elif kind in (2, 3):  # first or middle piece
            pending += payload
        else:
            position += left - 7 - length  # zero padding up to the block end
    return rows, config


def prepared_config(config: str | Path, directory: Path, **evaluation) -> Path:
    """A copy of a repository config whose Evaluation callback is test-sized (``evaluation`` overrides its
    init_args further, e.g. ``extractor="pixels"``), written to ``directory``."""
    from genzoo.cli import config_with_callback_args

    small = {"n_samples": 16, "n_reference": 16, "kid_subsets": 2, "kid_subset_size": 8, "prd_clusters": 1,
             "prd_runs": 1, "cache_dir": str(directory / "reference-cache")}
    repo = Path(__file__).resolve().parents[1]
    return config_with_callback_args(repo / config, directory, "genzoo.callbacks.Evaluation", **{**small, **evaluation})
