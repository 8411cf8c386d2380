"""Parsing of sizes and durations written by people ("64MiB", "1MB", "10us") and unit helpers."""

from __future__ import annotations

import re
from fractions import Fraction

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_TIME_UNITS_NS = {"": 1, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$")

PS_PER_NS = 1000
"""Simulated time is integer picoseconds inside the engines; tables and summaries are in ns."""


def ns_to_ps(ns: int) -> int:
    """Nanoseconds to picoseconds (exact)."""
    return ns * PS_PER_NS


def ps_to_ns(ps: float) -> int:
    """Picoseconds (int, or float from the fluid engine) to the nearest nanosecond, halves up."""
    return (round(ps) + PS_PER_NS // 2) // PS_PER_NS


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


def _parse(value: object, units: dict[str, int], what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative (got {value})")
        return value
    if isinstance(value, float):
        if value < 0 or value != int(value):
            raise ValueError(f"expected a whole non-negative {what}, got {value!r}")
        return int(value)
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"must not be negative (got {value!r})")
        m = _NUMBER.match(value)
        if m and m.group(2).lower() in units:
            total = float(m.group(1)) * units[m.group(2).lower()]
            if total != int(total):
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


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def format_ns(ns: float) -> str:
    for unit, size in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= size:
            return f"{ns / size:.3f} {unit}"
    return f"{ns:.0f} ns"
