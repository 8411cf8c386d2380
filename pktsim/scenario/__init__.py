"""Scenarios: what a run simulates (spec models) and how it is read from files and options."""

from pktsim.scenario.spec import *  # noqa: F401,F403
from pktsim.scenario.spec import load_scenario, preset_names  # noqa: F401
