"""Analysis: ideal times, congestion per phase, validation of a model, workload export."""
