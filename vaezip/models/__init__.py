"""Model classes. Each has ``forward`` for training; coding lives in codec.py on top of the model's
``analyse`` / ``hyper_parameters`` / ``synthesise`` steps."""
from .hyperprior import MeanScaleHyperprior, ModelConfig, RDOutput

__all__ = ["MeanScaleHyperprior", "ModelConfig", "RDOutput"]
