"""Plain ``nn.Module`` networks. They know nothing of Lightning; models receive them through factories
``generator(latent_dim, data_shape, value_range)`` and ``critic(data_shape)`` chosen in the config."""

from genzoo.nets.common import output_activation
from genzoo.nets.dcgan import DCGANCritic, DCGANGenerator
from genzoo.nets.forms import DifferentialForm, Downsampler, FlatCritic, FlatGenerator, FlatOneForm
from genzoo.nets.infogan import InfoGANCritic, InfoGANDecoder, InfoGANEncoder, LucicInfoGANDecoder
from genzoo.nets.mlp import MLPCritic, MLPEncoder, MLPGenerator, MLPOneForm
from genzoo.nets.ocgan import OCGANCritic, OCGANGenerator
from genzoo.nets.wgan_gp import (
    WGANGPCifarCritic,
    WGANGPCifarGenerator,
    WGANGPMnistCritic,
    WGANGPMnistGenerator,
    WGANGPResNetCritic,
    WGANGPResNetGenerator,
)

__all__ = ["DCGANCritic", "DCGANGenerator", "DifferentialForm", "Downsampler", "FlatCritic", "FlatGenerator",
           "FlatOneForm", "InfoGANCritic", "InfoGANDecoder", "InfoGANEncoder", "LucicInfoGANDecoder", "MLPCritic",
           "MLPEncoder", "MLPGenerator", "MLPOneForm", "OCGANCritic", "OCGANGenerator", "WGANGPCifarCritic",
           "WGANGPCifarGenerator", "WGANGPMnistCritic", "WGANGPMnistGenerator", "WGANGPResNetCritic",
           "WGANGPResNetGenerator", "default_critic", "default_decoder", "default_encoder", "default_generator",
           "output_activation"]


def default_generator(latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float]):
    """An MLP for vector data, a DCGAN generator for images."""
    if len(data_shape) == 1:
        return MLPGenerator(latent_dim, data_shape, value_range)
    return DCGANGenerator(latent_dim, data_shape, value_range)


def default_critic(data_shape: tuple[int, ...], norm: str = "none"):
    if len(data_shape) == 1:
        return MLPCritic(data_shape)
    return DCGANCritic(data_shape, norm=norm)


def default_encoder(data_shape: tuple[int, ...], latent_dim: int):
    """Autoencoders: an MLP for vector data, FlexAE's InfoGAN-style encoder for images."""
    if len(data_shape) == 1:
        return MLPEncoder(data_shape, latent_dim)
    return InfoGANEncoder(data_shape, latent_dim)


def default_decoder(latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float]):
    if len(data_shape) == 1:
        return MLPGenerator(latent_dim, data_shape, value_range)
    return InfoGANDecoder(latent_dim, data_shape, value_range)
