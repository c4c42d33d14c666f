"""The .vz container: layout, validation order, and hostile input."""
from __future__ import annotations

import struct
import zlib

import pytest

from vaezip.errors import FormatError
from vaezip.format import FORMAT_VERSION, MAGIC, Section, pack, parse, read_header
from vaezip.format.container import SECTION_Y, SECTION_Z


def make(**kw) -> bytes:
    args = dict(mode="RGB", width=17, height=999, quality=62.5, model="msh64-r1", weights_hash=bytes(range(16)),
                sections=[Section(SECTION_Z, b"zzzz" * 3), Section(SECTION_Y, b"yyyy" * 10)], symbols_crc=1234)
    args.update(kw)
    return pack(**args)


def test_round_trip_of_every_header_field():
    data = make()
    header, sections = parse(data)
    assert (header.version, header.mode, header.width, header.height) == (FORMAT_VERSION, "RGB", 17, 999)
    assert header.quality == 62.5 and header.model == "msh64-r1" and header.weights_hash == bytes(range(16))
    assert header.symbols_crc == 1234 and header.file_bytes == len(data)
    assert sections == {SECTION_Z: b"zzzz" * 3, SECTION_Y: b"yyyy" * 10}
    assert header.bpp == pytest.approx(8 * len(data) / (17 * 999))


def test_golden_header_bytes():
    """The layout of version 1 is frozen: these bytes must never change."""
    data = make(mode="L", width=1, height=2, quality=100, model="m", weights_hash=b"\xaa" * 16,
                sections=[Section(SECTION_Z, b"\x01\x02\x03\x04")], symbols_crc=0xDEADBEEF)
    expected_head = (MAGIC + bytes([1, 1]) + struct.pack("<IIH", 1, 2, 10000) + b"\x01m" + b"\xaa" * 16
                     + b"\x01" + struct.pack("<BI", 1, 4) + struct.pack("<II", zlib.crc32(b"\x01\x02\x03\x04"), 0xDEADBEEF))
    assert data[: len(expected_head)] == expected_head
    assert data[len(expected_head):len(expected_head) + 4] == struct.pack("<I", zlib.crc32(expected_head))
    assert data[-4:] == b"\x01\x02\x03\x04" and len(data) == len(expected_head) + 8


def test_every_truncation_is_a_format_error():
    data = make()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            parse(data[:n])


def test_trailing_data_is_refused():
    with pytest.raises(FormatError, match="trailing"):
        parse(make() + b"\0")


def test_every_flipped_bit_is_detected():
    data = make()
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(FormatError):
                parse(bytes(bad))


@pytest.mark.parametrize("blob", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"hello world" * 10, bytes(200)])
def test_foreign_files_are_named_as_such(blob):
    with pytest.raises(FormatError, match="not a .vz file|truncated"):
        read_header(blob)


def _reheader(data: bytes, offset: int, value: bytes) -> bytes:
    """Forge a header field and fix the header CRC, as a hostile writer would."""
    header = read_header(data)
    bad = bytearray(data)
    bad[offset:offset + len(value)] = value
    crc_at = header.header_bytes - 4
    bad[crc_at:crc_at + 4] = struct.pack("<I", zlib.crc32(bytes(bad[:crc_at])))
    return bytes(bad)


def test_future_version_asks_for_an_upgrade():
    with pytest.raises(FormatError, match="upgrade vaezip"):
        read_header(_reheader(make(), 8, bytes([FORMAT_VERSION + 1])))


def test_huge_declared_size_is_refused_before_allocation():
    forged = _reheader(make(), 10, struct.pack("<II", 100_000, 100_000))
    with pytest.raises(FormatError, match="exceeds the limit"):
        read_header(forged, max_pixels=1 << 28)
    assert read_header(forged, max_pixels=None).width == 100_000


def test_forged_section_length_is_refused():
    data = make()
    header = read_header(data)
    table_at = header.header_bytes - 12 - 10
    with pytest.raises(FormatError, match="truncated"):
        read_header(_reheader(data, table_at + 1, struct.pack("<I", 1 << 31)))


def test_payload_corruption_is_detected_by_checksum():
    data = bytearray(make())
    data[-1] ^= 0xFF
    read_header(bytes(data))  # the header alone is intact
    with pytest.raises(FormatError, match="checksum"):
        parse(bytes(data))
