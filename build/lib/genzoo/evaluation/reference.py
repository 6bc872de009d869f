"""The on-disk cache of real-data features, keyed by everything that can change them.

A key names the datamodule's :meth:`~genzoo.datamodules.base.ZooDataModule.identity` (its class and every setting that
can change its samples), the split, the subset, a fingerprint of the first and last selected samples (changed
files or preprocessing) and the extractor's protocol (network, weights hash, preprocessing); a changed key
recomputes, a corrupt file is ignored with a warning."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genzoo.checkpoints import atomic_save, load_plain
from genzoo.evaluation.features import FeatureSet

CACHE_ENV = "GENZOO_CACHE_DIR"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/genzoo")).expanduser() / "reference"


def sample_fingerprint(dataset: Dataset, indices: Sequence[int], count: int = 16) -> str:
    """A hash of the first and last few selected samples: changed files or preprocessing change the key."""
    digest = hashlib.sha256()
    for i in list(indices[:count]) + list(indices[-count:]):
        sample = dataset[i]
        x = sample["x"] if isinstance(sample, dict) else sample
        digest.update(np.ascontiguousarray(torch.as_tensor(x).float().numpy()).tobytes())
    return digest.hexdigest()[:16]


def plain_json(key: dict[str, Any]) -> Any:
    """The key as it reads back from JSON (tuples become lists), for comparing a stored key with a fresh one."""
    return json.loads(json.dumps(key, sort_keys=True, default=str))


class ReferenceCache:
    """Real-data feature sets on disk, one file per key (``None``: no caching), written atomically by rank zero."""

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else None

    def path(self, key: dict[str, Any]) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        name = key["datamodule"]["class"].rsplit(".", 1)[-1]
        extractor = str(key["extractor"].get("extractor", "features"))
        return self.directory / f"{name}-{key['split']}-{key['n']}-{extractor}-{digest}.pt"

    def load(self, key: dict[str, Any]) -> FeatureSet | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = load_plain(path, "reference cache")
            if entry.get("key") != plain_json(key):
                raise ValueError("its key differs")
            return FeatureSet(entry["features"], entry.get("pixels"))
        except Exception as error:  # corrupt or foreign file: recompute rather than trust it
            warnings.warn(f"ignoring reference cache {path} ({error}); recomputing", stacklevel=2)
            return None

    def save(self, key: dict[str, Any], value: FeatureSet) -> None:
        path = self.path(key)
        if path is None:
            return
        atomic_save({"key": plain_json(key), "features": value.features, "pixels": value.pixels}, path)
