"""Exponential backoff for retrying against a broker that is away."""

from __future__ import annotations


class Backoff:
    """Delays of `first`, twice that, ... up to `cap` seconds; `reset()` after a success."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The delay to wait now; the following one doubles."""
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first
