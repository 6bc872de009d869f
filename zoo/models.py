"""Every model the CLI can build (``model.class_path: WGANGP`` resolves through these imports)."""

from zoo.gan import DCGAN, LSGAN
from zoo.wgan import WGAN, WGANGP

__all__ = ["DCGAN", "LSGAN", "WGAN", "WGANGP"]
