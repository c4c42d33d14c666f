"""The .vz container: byte layout, writer and validating reader. No torch import here."""
from .container import DEFAULT_QUALITY, FORMAT_VERSION, MAGIC, Section, VzHeader, pack, parse, read_header

__all__ = ["DEFAULT_QUALITY", "FORMAT_VERSION", "MAGIC", "Section", "VzHeader", "pack", "parse", "read_header"]
