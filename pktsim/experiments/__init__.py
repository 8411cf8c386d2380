"""Experiments: sweeps (many runs, one table: sweep_spec.py the file, sweep.py the runner, executors.py
where the points run), the reproduction study (a preset sweep) and the diagnosis evaluation."""
