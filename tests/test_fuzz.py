"""Hostile input: whatever the bytes, decoding ends in a vaezip error (or a correct image), never another
exception, a hang or a crash; forged sizes are bounded by the decompression-bomb limit."""
from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaezip
from vaezip.errors import VaezipError
from vaezip.format import read_header

from conftest import synthetic

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LIMIT = 1 << 20  # pixels: keeps forged-but-valid headers cheap to decode


@pytest.fixture(scope="module")
def sample() -> bytes:
    return vaezip.compress(synthetic(40, 72, seed=11), quality=60)


def decode_or_vaezip_error(data: bytes) -> None:
    try:
        img = vaezip.decompress(data, max_pixels=LIMIT)
    except VaezipError:
        return
    assert img.size[0] * img.size[1] <= LIMIT


def fix_crcs(data: bytearray, header_bytes: int) -> bytes:
    """Make a forged file pass every checksum but the symbol one, as a hostile writer could."""
    payload = bytes(data[header_bytes:])
    data[header_bytes - 12:header_bytes - 8] = struct.pack("<I", zlib.crc32(payload))
    data[header_bytes - 4:header_bytes] = struct.pack("<I", zlib.crc32(bytes(data[:header_bytes - 4])))
    return bytes(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(blob):
    decode_or_vaezip_error(blob)


@FUZZ
@given(st.data())
def test_mutated_files(sample, data):
    buf = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
        pos = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del buf[pos:pos + data.draw(st.integers(1, 64))]
        elif kind == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = data.draw(st.binary(min_size=1, max_size=16))
            buf[pos:pos + len(chunk)] = chunk
    decode_or_vaezip_error(bytes(buf))


@FUZZ
@given(payload=st.binary(min_size=0, max_size=600), split=st.integers(0, 600))
def test_forged_payload_with_valid_checksums(sample, payload, split):
    """Garbage that passes the header and payload CRCs reaches the range decoder: it must end in an error
    (the symbol checksum at the latest), never in a wrong image."""
    h = read_header(sample)
    z_len = min(split, len(payload)) // 4 * 4
    y_len = (len(payload) - z_len) // 4 * 4
    payload = payload[: z_len + y_len]
    head = bytearray(sample[: h.header_bytes])
    table = h.header_bytes - 12 - 10
    head[table:table + 10] = struct.pack("<BIBI", 1, z_len, 2, y_len)
    forged = fix_crcs(head + payload, h.header_bytes)
    if payload == sample[h.header_bytes:]:
        return
    with pytest.raises(VaezipError):
        vaezip.decompress(forged, max_pixels=LIMIT)


@FUZZ
@given(w=st.integers(0, 2**32 - 1), h=st.integers(0, 2**32 - 1), q=st.integers(0, 65535))
def test_forged_header_fields(sample, w, h, q):
    info = read_header(sample)
    buf = bytearray(sample)
    buf[10:20] = struct.pack("<IIH", w, h, q)
    decode_or_vaezip_error(fix_crcs(buf, info.header_bytes))


def test_future_version_and_unknown_model(sample):
    info = read_header(sample)
    newer = bytearray(sample)
    newer[8] = 2
    with pytest.raises(VaezipError, match="upgrade"):
        vaezip.decompress(fix_crcs(newer, info.header_bytes))
    name = info.model.encode()
    other = bytearray(sample)
    other[21:21 + len(name)] = b"x" * len(name)
    with pytest.raises(VaezipError, match="unknown model"):
        vaezip.decompress(fix_crcs(other, info.header_bytes))


def test_bomb_limit_is_checked_before_allocation(sample):
    info = read_header(sample)
    buf = bytearray(sample)
    buf[10:18] = struct.pack("<II", 60000, 60000)
    with pytest.raises(VaezipError, match="exceeds the limit"):
        vaezip.decompress(fix_crcs(buf, info.header_bytes))
