"""Hashes that pick paths: stable hashes, the RoCEv2 5-tuple key, per-switch salts and the
connection entropy a NIC chooses. Every backend and planner uses these, so all agree on paths."""

from __future__ import annotations

import functools
import hashlib

MASK32 = 0xFFFFFFFF
ROCE_DST_PORT = 4791


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process (unlike ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with probability ~1/2."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def flow_key(src: int, dst: int, entropy: int) -> int:
    """Key of a packet's RoCEv2 5-tuple (src IP, dst IP, UDP src port = entropy, dst port 4791,
    UDP): its 32-bit hash in the low bits, the destination host index above them, so that equal
    keys always mean the same destination (a switch may memoise its choice per key)."""
    h = fmix32((src * 0x01000193) ^ fmix32(dst ^ (ROCE_DST_PORT << 16)) ^ (entropy * 0x9E3779B1))
    return (dst << 32) | h


def flow_key_parts(src: int, dst: int) -> tuple[int, int]:
    """What :func:`flow_key` computes from ``src`` and ``dst`` alone, for :func:`sprayed_key`:
    ``(dst << 32, the source and destination mixed)``, the mix with :func:`fmix32`'s first
    xorshift applied and cut to 32 bits (see :func:`entropy_mix`)."""
    m = (src * 0x01000193) ^ fmix32(dst ^ (ROCE_DST_PORT << 16))
    return dst << 32, (m ^ (m >> 16)) & MASK32


def entropy_mix(entropy: int) -> int:
    """What :func:`flow_key` computes from the entropy alone, for :func:`sprayed_key`: the entropy
    mixed, with :func:`fmix32`'s first xorshift applied and cut to 32 bits. That xorshift
    distributes over the xor of the two mixes, and the multiplication after it reads only the
    low 32 bits, so the halves can be prepared apart."""
    g = entropy * 0x9E3779B1
    return (g ^ (g >> 16)) & MASK32


@functools.cache
def entropy_mixes() -> list[int]:
    """:func:`entropy_mix` of every 16-bit entropy, indexed by the entropy: a spraying NIC's
    per-packet table lookup instead of three operations. Computed once per process (a constant:
    2.6 MB of Python ints, not worth one copy per NIC)."""
    return [entropy_mix(e) for e in range(1 << 16)]


def sprayed_key(parts: tuple[int, int], mix: int) -> int:
    """``flow_key(src, dst, entropy)`` from ``flow_key_parts(src, dst)`` and ``entropy_mix(entropy)``
    (``entropy_mixes()[entropy]``): the per-packet rest of the key when the entropy changes every
    packet (spraying), with :func:`fmix32`'s remaining steps inlined on purpose (once per packet;
    the ideal NIC inlines this function too)."""
    high, connection = parts
    h = ((connection ^ mix) * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return high | (h ^ (h >> 16))


def salted_hash(key: int, salt: int) -> int:
    """A switch's ECMP hash of a packet's 5-tuple key: the next hop is
    ``group[salted_hash(key, salt) % len(group)]``."""
    return fmix32((key ^ salt) & MASK32)


def connection_entropy(seed: int, job: str, src: str, dst: str, channel: int, subflow: int) -> int:
    """The 16-bit entropy (UDP source port) of the connection carrying a job's traffic from ``src``
    to ``dst`` on ``channel`` / ``subflow``: fixed for the run, whatever the order of events."""
    return stable_hash("entropy", seed, job, src, dst, channel, subflow) & 0xFFFF


def switch_salt(seed: int, switch: str) -> int:
    """Per-switch hash salt: different at every switch (no polarisation), fixed by the seed."""
    return stable_hash("salt", seed, switch) & MASK32


