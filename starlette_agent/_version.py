"""The package version: one place, read by ``__init__`` and by the default ``User-Agent``."""

__version__ = "0.1.0"
