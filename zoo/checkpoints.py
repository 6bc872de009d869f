"""Checkpoint checks with errors that say what is wrong, before Lightning's own loading."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary pickled code runs) or raise a ValueError
    that names the file and says whether it is missing, truncated/corrupt or not a genzoo checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"checkpoint {path} is not a readable checkpoint (truncated or corrupt? "
                         f"{path.stat().st_size} bytes): {message}") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} is not a readable Lightning checkpoint (no state_dict)")
    require_zoo_section(checkpoint, f"checkpoint {path}")
    return checkpoint


def require_zoo_section(checkpoint: dict[str, Any], what: str = "this checkpoint") -> None:
    if "zoo" not in checkpoint:
        raise ValueError(f"{what} was not written by a genzoo model (no 'zoo' section)")
