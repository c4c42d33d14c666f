"""The .vz container, format version 1 — the one place where the byte layout is defined.

All integers are little-endian. A file is a header followed by its sections::

    offset  size  field
    0       8     magic: 89 56 5A 0D 0A 1A 0A 00  ("\\x89VZ\\r\\n\\x1a\\n\\0"; catches text-mode and 7-bit damage)
    8       1     format version: 1
    9       1     colour mode: 0 = RGB, 1 = grayscale (decoded back to one channel)
    10      4     width in pixels, u32 >= 1
    14      4     height in pixels, u32 >= 1
    18      2     quality x 100, u16 in 0..10000 (the rate level of the variable-rate model)
    20      1     n = length of the model name, 1..64
    21      n     model name, ASCII (a key of vaezip.zoo)
    21+n    16    weights hash: the first 16 bytes of the SHA-256 of the model's weights file
    37+n    1     k = number of sections, 1..16
    38+n    5k    section table, in decode order: kind u8, byte length u32
    38+n+5k 4     CRC-32 of the payload (all sections, concatenated)
    42+n+5k 4     CRC-32 of the decoded symbols (codec.symbol_checksum)
    46+n+5k 4     CRC-32 of every header byte before this field
    50+n+5k ...   the sections, back to back, exactly as long as the table says; nothing follows

Section kinds: 1 = z, the hyper-latent; 2 = y, the latent (with a checkerboard context model: its anchors,
row + column even); 3 = y2, the non-anchors of a checkerboard model, coded with tables that depend on the
decoded anchors. Which sections a file needs follows from its model. Each holds constriction range-coder
words (u32, little-endian), so its length is a multiple of 4. The symbols in a section, and for models with
escape coding the escapes after them, are specified in entropy/coder.py.

The symbol checksum lets a decoder that computed different probabilities than the encoder report it
instead of returning garbage. A reader must check, in this order and before allocating anything
image-sized: length, magic, version, header fields, header CRC, the image-size limit, the section
lengths against the file size, the payload CRC. Unknown versions are refused, never guessed at.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from ..errors import FormatError

MAGIC = b"\x89VZ\r\n\x1a\n\x00"
#: The quality compress uses when none is given (0..100; the header stores it in hundredths).
DEFAULT_QUALITY = 75.0
FORMAT_VERSION = 1
SECTION_Z = 1
SECTION_Y = 2
SECTION_Y2 = 3
SECTION_NAMES = {SECTION_Z: "z", SECTION_Y: "y", SECTION_Y2: "y2"}
MODE_CODES = {"RGB": 0, "L": 1}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}
MAX_NAME = 64
MAX_SECTIONS = 16
HASH_BYTES = 16
MIN_SIZE = len(MAGIC) + 1 + 1 + 4 + 4 + 2 + 1 + 1 + HASH_BYTES + 1 + 5 + 12

_FIXED = struct.Struct("<BBIIHB")  # version, mode, width, height, quality*100, name length
_SECTION = struct.Struct("<BI")
_CRCS = struct.Struct("<III")


@dataclass(frozen=True)
class Section:
    kind: int
    data: bytes


@dataclass(frozen=True)
class VzHeader:
    """What a .vz file says about itself; read without building a network."""

    version: int
    mode: str
    width: int
    height: int
    quality: float
    model: str
    weights_hash: bytes
    section_kinds: tuple[int, ...]
    section_lengths: tuple[int, ...]
    payload_crc: int
    symbols_crc: int
    header_bytes: int
    file_bytes: int = field(default=0)

    @property
    def bpp(self) -> float:
        return 8.0 * self.file_bytes / (self.width * self.height)


def quality_code(quality: float) -> int:
    """quality 0..100 -> the u16 stored in the header (hundredths)."""
    return int(round(float(quality) * 100))


def pack(*, mode: str, width: int, height: int, quality: float, model: str, weights_hash: bytes,
         sections: list[Section], symbols_crc: int) -> bytes:
    name = model.encode("ascii")
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"model name {model!r} must be 1..{MAX_NAME} ASCII characters")
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise ValueError("a .vz file holds 1..16 sections")
    head = bytearray(MAGIC)
    head += _FIXED.pack(FORMAT_VERSION, MODE_CODES[mode], width, height, quality_code(quality), len(name))
    head += name + weights_hash[:HASH_BYTES]
    head += bytes([len(sections)])
    for s in sections:
        head += _SECTION.pack(s.kind, len(s.data))
    payload = b"".join(s.data for s in sections)
    head += struct.pack("<II", zlib.crc32(payload), symbols_crc & 0xFFFFFFFF)
    head += struct.pack("<I", zlib.crc32(bytes(head)))
    return bytes(head) + payload


def read_header(data: bytes, max_pixels: int | None = None) -> VzHeader:
    """Validate and decode the header of a .vz file. Raises FormatError. Reads no payload."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(bytes(data)):
            raise FormatError(f"truncated .vz file ({len(data)} bytes); the file is incomplete")
        raise FormatError("not a .vz file (bad magic number); pass a file written by vaezip compress")
    pos = len(MAGIC)
    if len(data) < pos + 1:
        raise FormatError("truncated .vz file (no version byte); the file is incomplete")
    version = data[pos]
    if version != FORMAT_VERSION:
        raise FormatError(f".vz format version {version} is not supported (this vaezip reads version "
                          f"{FORMAT_VERSION}); upgrade vaezip" if version > FORMAT_VERSION else
                          f".vz format version {version} does not exist; the file is corrupt")
    if len(data) < MIN_SIZE:
        raise FormatError(f"truncated .vz file ({len(data)} bytes, the header alone needs at least {MIN_SIZE})")
    _, mode_code, width, height, q, name_len = _FIXED.unpack_from(data, pos)
    pos += _FIXED.size
    if not 1 <= name_len <= MAX_NAME:
        raise FormatError(f"corrupt .vz header (model name length {name_len})")
    end_fixed = pos + name_len + HASH_BYTES + 1
    if len(data) < end_fixed:
        raise FormatError("truncated .vz file (inside the header); the file is incomplete")
    name_raw = bytes(data[pos:pos + name_len])
    pos += name_len
    weights_hash = bytes(data[pos:pos + HASH_BYTES])
    pos += HASH_BYTES
    count = data[pos]
    pos += 1
    if not 1 <= count <= MAX_SECTIONS:
        raise FormatError(f"corrupt .vz header ({count} sections)")
    header_end = pos + count * _SECTION.size + _CRCS.size
    if len(data) < header_end:
        raise FormatError("truncated .vz file (inside the header); the file is incomplete")
    kinds, lengths = [], []
    for _ in range(count):
        kind, length = _SECTION.unpack_from(data, pos)
        kinds.append(kind)
        lengths.append(length)
        pos += _SECTION.size
    payload_crc, symbols_crc, header_crc = _CRCS.unpack_from(data, pos)
    if zlib.crc32(bytes(data[: pos + 8])) != header_crc:
        raise FormatError("corrupt .vz header (checksum mismatch); the file was damaged")
    # The header is intact from here on: what follows are checks of its meaning.
    try:
        model = name_raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("corrupt .vz header (model name is not ASCII)") from None
    if mode_code not in MODE_NAMES:
        raise FormatError(f"unknown colour mode {mode_code} in .vz header; upgrade vaezip")
    if width < 1 or height < 1:
        raise FormatError(f"corrupt .vz header (image size {width}x{height})")
    if q > 10000:
        raise FormatError(f"corrupt .vz header (quality {q / 100})")
    if max_pixels is not None and width * height > max_pixels:
        raise FormatError(f"image of {width}x{height} = {width * height} pixels exceeds the limit of "
                          f"{max_pixels} pixels; raise it with --max-pixels if you trust this file")
    unknown = [k for k in kinds if k not in SECTION_NAMES]
    if unknown:
        raise FormatError(f"unknown section kind {unknown[0]} in .vz file; upgrade vaezip")
    if sum(lengths) != len(data) - header_end:
        have = len(data) - header_end
        what = "truncated" if have < sum(lengths) else "has trailing data"
        raise FormatError(f".vz file {what}: its sections need {sum(lengths)} bytes after the header, "
                          f"found {have}")
    return VzHeader(version, MODE_NAMES[mode_code], width, height, q / 100, model, weights_hash,
                    tuple(kinds), tuple(lengths), payload_crc, symbols_crc, header_end, len(data))


def parse(data: bytes, max_pixels: int | None = None) -> tuple[VzHeader, dict[int, bytes]]:
    """Validate a whole .vz file -> (header, {section kind: bytes}). Raises FormatError."""
    header = read_header(data, max_pixels)
    payload = memoryview(data)[header.header_bytes:]
    if zlib.crc32(payload) != header.payload_crc:
        raise FormatError("corrupt .vz payload (checksum mismatch); the file was damaged")
    sections, pos = {}, 0
    for kind, length in zip(header.section_kinds, header.section_lengths):
        if kind in sections:
            raise FormatError(f"corrupt .vz file (section {SECTION_NAMES[kind]} appears twice)")
        sections[kind] = bytes(payload[pos:pos + length])
        pos += length
    return header, sections
