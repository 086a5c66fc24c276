"""The package version (one place; rbtw.__version__ and the download User-Agent read it)."""

__version__ = "0.1.0"
