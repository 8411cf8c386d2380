"""pktsim: a packet-level discrete-event simulator of datacenter fabrics carrying ML training traffic."""

__version__ = "0.1.0"
