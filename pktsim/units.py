"""Parsing of sizes and durations written by people ("64MiB", "1MB", "10us") and unit helpers."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_TIME_UNITS_NS = {"": 1, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$")

PS_PER_NS = 1000


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


def ps_per_byte(gbps: float) -> float:
    """Serialisation time of one byte, in picoseconds, at ``gbps`` Gbit/s."""
    return 8000.0 / gbps


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
