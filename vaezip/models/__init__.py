"""Model classes. Each has ``forward`` for training; coding lives in codec.py on top of the model's
``analyse`` / ``hyper_synthesis`` / ``synthesise`` steps (and ``refine`` for context models)."""
from .checkerboard import CheckerboardHyperprior
from .hyperprior import MeanScaleHyperprior, ModelConfig, RDOutput, rd_loss

#: ModelConfig.arch -> class. A weights file names its architecture; nothing is guessed from shapes.
ARCHITECTURES = {"msh-gain": MeanScaleHyperprior, "msh-gain-cb": CheckerboardHyperprior}


def build_model(config: ModelConfig) -> MeanScaleHyperprior:
    """The network of a config, freshly initialised. Raises ValueError for an unknown architecture."""
    cls = ARCHITECTURES.get(config.arch)
    if cls is None:
        raise ValueError(f"unknown architecture {config.arch!r} (known: {', '.join(ARCHITECTURES)})")
    return cls(config)


__all__ = ["ARCHITECTURES", "CheckerboardHyperprior", "MeanScaleHyperprior", "ModelConfig", "RDOutput",
           "build_model", "rd_loss"]
