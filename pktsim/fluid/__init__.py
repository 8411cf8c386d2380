"""The flow-level (fluid) backend: max-min fair rates over the same DAG, fabric and paths."""
