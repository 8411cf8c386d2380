"""Flow plans: how messages are cut into subflows and pinned to paths; the planners.

Importing the package registers every planner in :data:`pktsim.planning.planners.PLANNERS`: those of
:mod:`pktsim.planning.planners`, then :mod:`pktsim.planning.mmf`'s."""

from pktsim.planning import mmf  # noqa: F401  (registers lb.planner: mmf)
