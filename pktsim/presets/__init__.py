"""The presets shipped with pktsim, as package data: ``pktsim.presets.topologies``,
``pktsim.presets.workloads`` and ``pktsim.presets.profiles`` are the top-level ``topologies/``,
``workloads/`` and ``profiles/`` directories of the source tree (see pyproject.toml). They are
looked up by :mod:`pktsim.scenario.presets`."""
