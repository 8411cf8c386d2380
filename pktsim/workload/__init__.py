"""Workloads: collective generators and the message DAG they produce (independent of any network model)."""
