"""The exception tree: every error vaezip raises on purpose. Each message names the offending value (and the
file it concerns) and what to do about it; the CLI prints it as one line and exits with status 1."""


class VaezipError(Exception):
    """Root of every error vaezip raises on purpose."""


class FormatError(VaezipError):
    """A .vz file is truncated, corrupt, foreign or from an unsupported version."""


class DecodeMismatchError(FormatError):
    """The decoder computed different symbols than the encoder (different probabilities)."""


class ModelError(VaezipError):
    """A model is unknown, archived or missing, or its weights are damaged or not the ones a file needs."""


class ImageError(VaezipError):
    """An input image cannot be read or has an unsupported size or mode."""


class InputError(VaezipError):
    """An input file cannot be read (missing, a folder, no permission)."""


class OutputError(VaezipError):
    """An output cannot be written: it exists (without --force), is the input, or its folder is missing."""


# -- training (vaezip train, vaezip export) ---------------------------------------------------------------
class TrainingError(VaezipError):
    """Root of the errors of training and export."""


class DatasetError(TrainingError):
    """A training folder is missing, empty, or has no image large enough for a crop."""


class CheckpointError(TrainingError):
    """A checkpoint is missing or unreadable, or checkpoints to average do not belong together."""


class DeviceError(TrainingError):
    """The requested device cannot run this training."""


class DivergenceError(TrainingError):
    """Training produced non-finite losses or gradients for too many steps in a row."""


class GrowError(TrainingError):
    """A model cannot be grown into the requested shape."""
