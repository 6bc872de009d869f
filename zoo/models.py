"""Every model the CLI can build (``model.class_path: WGANGP`` resolves through these imports)."""

from zoo.wgan import WGAN, WGANGP

__all__ = ["WGAN", "WGANGP"]
