"""Every error Kairos raises on purpose.

Each error carries a message that names the offending value and a ``fix`` hint; ``str(err)``
renders both on one line as ``<message> To fix: <hint>``. The CLI prints that line and exits
with status 2, so users never see a traceback for bad input.
"""

from __future__ import annotations


class KairosError(Exception):
    """Base class: a message plus a "To fix:" hint."""

    def __init__(self, message: str, fix: str) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} To fix: {fix}")

    def __reduce__(self) -> tuple[type[KairosError], tuple[str, str]]:
        # Rebuilt from (message, fix) when it crosses processes (Ray tasks, process pools).
        return (type(self), (self.message, self.fix))


class ProfileError(KairosError):
    """A latency profile file is malformed, or a profile was asked for that does not exist."""


class UnknownModelError(ProfileError):
    """A model is not in the loaded profiles."""


class UnknownInstanceTypeError(KairosError):
    """An instance type is not in the profiles or the price table."""


class PriceError(KairosError):
    """A price table is malformed or lacks a price."""


class PoolError(KairosError):
    """A pool specification (``TYPE=N,TYPE=N``) is malformed or invalid."""


class WorkloadError(KairosError):
    """A batch-size distribution, arrival process or trace is malformed."""


class ConfigError(KairosError):
    """A numeric setting is out of range (rate, QoS, budget, query count, ...)."""


class PolicyError(KairosError):
    """A distribution policy is unknown or returned an invalid decision."""


class InfeasibleError(KairosError):
    """No pool or schedule can satisfy the request (for example a budget too small)."""


class RuntimeServiceError(KairosError):
    """The live router or a worker failed in a way the caller must handle."""
