"""The exception tree. Every message names the offending value and what to do about it."""


class VaezipError(Exception):
    """Root of every error vaezip raises on purpose; the CLI prints it as one line and exits 1."""


class FormatError(VaezipError):
    """A .vz file is truncated, corrupt, foreign or from an unsupported version."""


class ModelError(VaezipError):
    """A model is unknown, missing, or its weights do not match the registry."""


class ImageError(VaezipError):
    """An input image cannot be read or has an unsupported size or mode."""


class DecodeMismatchError(FormatError):
    """The decoder computed different symbols than the encoder (different probabilities)."""
