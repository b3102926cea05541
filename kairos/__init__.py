"""Kairos: cost-efficient ML inference serving on heterogeneous cloud instances."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kairos")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
