"""genzoo: generative models as reusable LightningModules."""

__version__ = "0.1.0"
