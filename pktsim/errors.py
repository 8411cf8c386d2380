"""Errors meant for people: one line naming the file, the field and the problem."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (scenario, preset, option). The CLI prints it as one line and exits 2."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


class TooLarge(InputError):
    """An instance a solver refuses for its size (the ILP planner above
    :data:`~pktsim.planning.planners.ILP_MAX_BINARIES` binaries). The study reports such a run as
    status ``too large`` instead of an error."""
