"""Every model the CLI can build (``model.class_path: WGANGP`` resolves through these imports)."""

from genzoo.aeot import AEOT
from genzoo.flatgan import FlatGAN
from genzoo.flexae import FlexAE, FlexAESR
from genzoo.gan import DCGAN, LSGAN
from genzoo.hinge import HingeGAN
from genzoo.wae import WAE
from genzoo.wgan import WGAN, WGANGP

__all__ = ["AEOT", "DCGAN", "FlatGAN", "HingeGAN", "LSGAN", "WAE", "WGAN", "WGANGP", "FlexAE", "FlexAESR"]
