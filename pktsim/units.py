"""Parsing of sizes, durations and rates written by people ("64MiB", "1MB", "10us", "400G") and
unit helpers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "pb": 10**15, "pib": 2**50,
}
_TIME_UNITS_NS = {"": 1, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}
_RATE_UNITS_GBPS = {
    "": Fraction(1), "k": Fraction(1, 10**6), "m": Fraction(1, 10**3), "g": Fraction(1), "t": Fraction(10**3),
}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)(?:bps|b/s|bit/s)?\s*$")

PS_PER_NS = 1000
"""Simulated time is integer picoseconds inside the engines; tables and summaries are in ns."""


def ns_to_ps(ns: int) -> int:
    """Nanoseconds to picoseconds (exact)."""
    return ns * PS_PER_NS


def ps_to_ns(ps: float) -> int:
    """Picoseconds (int, or float from the fluid engine) to the nearest nanosecond, halves up."""
    return (round(ps) + PS_PER_NS // 2) // PS_PER_NS


def ps_to_ns_array(ps: np.ndarray | Sequence[float]) -> np.ndarray:
    """:func:`pktsim.units.ps_to_ns` of every element (int64 ns): floats rounded half to even
    first, as Python's ``round``; integers exactly."""
    a = np.asarray(ps)
    whole = np.rint(a).astype(np.int64) if a.dtype.kind == "f" else a.astype(np.int64)
    return (whole + PS_PER_NS // 2) // PS_PER_NS


def ps_per_byte(gbps: float) -> Fraction:
    """Serialisation time of one byte at ``gbps`` Gbit/s, in ps, as an exact fraction: rates are
    held to whole Mbit/s, so 8e6 / (Mbit/s) is exact at 25/100/200/400/800G and at odd rates too."""
    return Fraction(8_000_000, round(gbps * 1000))


def serialisation_ps(size_bytes: int, gbps: float) -> int:
    """Time to put ``size_bytes`` on a ``gbps`` link, rounded up to a whole picosecond."""
    ppb = ps_per_byte(gbps)
    return -(-size_bytes * ppb.numerator // ppb.denominator)


def split_evenly(total: int, n: int) -> list[int]:
    """``total`` cut into ``n`` near-equal whole parts summing exactly to it: the first
    ``total % n`` parts get one more; parts are 0 when ``total < n`` (callers skip them)."""
    if n < 1:
        raise ValueError(f"cannot split into {n} parts")
    base, extra = divmod(total, n)
    return [base + (i < extra) for i in range(n)]


def _exact(text: str) -> Fraction:
    """The number ``text`` (digits, optional fraction and exponent) exactly; refuses what no
    float can hold (``1e400``, ``1e-400``) before building a huge exact number."""
    mantissa, _, exponent = text.lower().partition("e")
    if len(mantissa) > 400 or len(exponent.lstrip("+-")) > 3 or not math.isfinite(float(text)):
        raise ValueError(f"{text if len(text) <= 24 else text[:20] + '...'} is out of range")
    return Fraction(text)


def _parse(value: object, units: dict[str, int], what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative (got {value})")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of {what}, got {value!r}")
        if value < 0 or value != int(value):
            raise ValueError(f"expected a whole non-negative {what}, got {value!r}")
        return int(value)
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"must not be negative (got {value!r})")
        m = _NUMBER.match(value)
        if m and m.group(2).lower() in units:
            total = _exact(m.group(1)) * units[m.group(2).lower()]
            if total.denominator != 1:
                raise ValueError(f"{value!r} is not a whole number of {what}")
            return int(total)
        names = ", ".join(u for u in units if u)
        raise ValueError(f"cannot read {value!r} as {what} (units: {names})")
    raise ValueError(f"expected {what}, got {type(value).__name__}")


def parse_bytes(value: object) -> int:
    """Bytes from an integer or a string such as ``64MiB``, ``1MB``, ``4096``."""
    return _parse(value, _SIZE_UNITS, "bytes")


def parse_ns(value: object) -> int:
    """Nanoseconds from an integer or a string such as ``10us``, ``2ms``, ``500ns``."""
    return _parse(value, _TIME_UNITS_NS, "nanoseconds")


def parse_gbps(value: object) -> float:
    """A rate in Gbit/s from a number (Gbit/s) or a string such as ``400G``, ``400Gbps``,
    ``1.6T``, ``100Mbps``, ``25 Gb/s`` (bits, decimal prefixes k/M/G/T)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate in Gbit/s, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite rate, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative (got {value})")
        return float(value)
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"must not be negative (got {value!r})")
        m = _RATE.match(value)
        if m:
            return float(_exact(m.group(1)) * _RATE_UNITS_GBPS[m.group(2).lower()])
        raise ValueError(f"cannot read {value!r} as a rate (a number of Gbit/s, or with a unit: "
                         f"100Mbps, 400G, 400Gbps, 1.6T)")
    raise ValueError(f"expected a rate in Gbit/s, got {type(value).__name__}")


def format_bytes(n: float) -> str:
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def format_ns(ns: float) -> str:
    for unit, size in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= size:
            return f"{ns / size:.3f} {unit}"
    return f"{ns:.0f} ns"
