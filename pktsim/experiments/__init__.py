"""Experiments: the reproduction study (many runs, one table)."""
