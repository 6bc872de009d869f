"""A W&B logger that never prompts: with no credentials it logs offline (``wandb sync`` later)."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def wandb_credentials_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class ZooWandbLogger(WandbLogger):
    """``WandbLogger`` that goes offline when no API key is configured or ``WANDB_MODE`` says so, so the
    configs work on any machine without an account, a prompt or network access."""

    def __init__(self, project: str = "genzoo", offline: bool | None = None, **kwargs) -> None:
        if offline is None:
            offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_credentials_available()
        os.environ.setdefault("WANDB_SILENT", "true")
        super().__init__(project=project, offline=offline, **kwargs)
