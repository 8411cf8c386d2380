"""Errors meant for people: one line naming the file, the field and the problem."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (scenario, preset, option). The CLI prints it as one line and exits 2."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")

    def with_source(self, source: str, field: str | None = None, problem: str | None = None) -> InputError:
        """The same error (same class) said of another source, e.g. re-attributed by
        :func:`pktsim.scenario.blame` to where the user wrote the field."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        InputError.__init__(new, source, self.field if field is None else field,
                            self.problem if problem is None else problem)
        return new


class TooLarge(InputError):
    """An instance a solver refuses for its size (the ILP planner above
    :data:`~pktsim.planning.planners.ILP_MAX_BINARIES` flows x spines). The study reports such a run as
    status ``too large`` instead of an error."""
