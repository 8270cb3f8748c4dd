"""handshake: how many round trips HTTPS costs, counted from real protocol bytes."""

__version__ = "0.1.0"
