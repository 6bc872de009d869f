"""Plain ``nn.Module`` networks. They know nothing of Lightning; models receive them through factories
``generator(latent_dim, data_shape, value_range)`` and ``critic(data_shape)`` chosen in the config."""

from zoo.nets.common import output_activation
from zoo.nets.dcgan import DCGANCritic, DCGANGenerator
from zoo.nets.mlp import MLPCritic, MLPGenerator
from zoo.nets.ocgan import OCGANCritic, OCGANGenerator

__all__ = ["DCGANCritic", "DCGANGenerator", "MLPCritic", "MLPGenerator", "OCGANCritic", "OCGANGenerator",
           "default_critic", "default_generator", "output_activation"]


def default_generator(latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float]):
    """An MLP for vector data, a DCGAN generator for images."""
    if len(data_shape) == 1:
        return MLPGenerator(latent_dim, data_shape, value_range)
    return DCGANGenerator(latent_dim, data_shape, value_range)


def default_critic(data_shape: tuple[int, ...], norm: str = "none"):
    if len(data_shape) == 1:
        return MLPCritic(data_shape)
    return DCGANCritic(data_shape, norm=norm)
