"""autoresearch: autonomous ML research with a harness that owns the loop, the clock and the metric."""

__version__ = "0.1.0"
