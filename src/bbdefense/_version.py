"""The version of bbdefense, defined once (pyproject.toml reads it; ``bbdefense.__version__`` re-exports it)."""

__version__ = "0.2.0"
