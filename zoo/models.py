"""Every model the CLI can build (``model.class_path: WGANGP`` resolves through these imports)."""

from zoo.aeot import AEOT
from zoo.flatgan import FlatGAN
from zoo.flexae import FlexAE, FlexAESR
from zoo.gan import DCGAN, LSGAN
from zoo.hinge import HingeGAN
from zoo.wae import WAE
from zoo.wgan import WGAN, WGANGP

__all__ = ["AEOT", "DCGAN", "FlatGAN", "HingeGAN", "LSGAN", "WAE", "WGAN", "WGANGP", "FlexAE", "FlexAESR"]
