"""The checksummed message format of the C test peers (tests/payload.h):
[u32 key][u32 index][u64 XXH64(rest, key << 32 | index)][rest], in pure
Python so the tests need nothing installed."""
import random
import struct

_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                           0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
_M = (1 << 64) - 1
HEAD = 16


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc, lane):
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def _merge(acc, val):
    return ((acc ^ _round(0, val)) * _P1 + _P4) & _M


def xxh64(data, seed=0):
    data = bytes(data)
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed, (seed - _P1) & _M]
        while i + 32 <= n:
            lanes = struct.unpack_from("<4Q", data, i)
            v = [_round(a, b) for a, b in zip(v, lanes)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for x in v:
            h = _merge(h, x)
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h ^= _round(0, struct.unpack_from("<Q", data, i)[0])
        h = (_rotl(h, 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        h ^= (struct.unpack_from("<I", data, i)[0] * _P1) & _M
        h = (_rotl(h, 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M
        h = (_rotl(h, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    return h ^ (h >> 32)


def make(key, index, length, rng=random):
    """A sealed message of `length` >= 16 bytes."""
    rest = rng.randbytes(length - HEAD)
    return struct.pack("<IIQ", key, index, xxh64(rest, key << 32 | index)) + rest


def check(msg):
    """(key, index) of an intact message; None for a short one carrying the
    C peer's pattern (len * 31 + i); raises ValueError if it is corrupt."""
    msg = bytes(msg)
    if len(msg) < HEAD:
        if msg != bytes((len(msg) * 31 + i) & 0xFF for i in range(len(msg))):
            raise ValueError(f"short message {msg!r} is corrupt")
        return None
    key, index, h = struct.unpack_from("<IIQ", msg)
    if xxh64(msg[HEAD:], key << 32 | index) != h:
        raise ValueError(f"message {key}/{index} of {len(msg)} bytes is corrupt")
    return key, index
