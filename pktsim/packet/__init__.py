"""The packet backend: SimPy engine seam, ports, switches, NICs, transport, congestion control."""
