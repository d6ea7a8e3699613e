"""Drift detectors, by configuration name, over a member's 0/1 error stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from river import drift
from river.drift import binary

from driftline.errors import ConfigError

DETECTORS: dict[str, Any] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
}


def make_detector(name: str, params: Mapping[str, Any]) -> Any | None:
    """A fresh detector, or None for "none"; bad parameters raise `ConfigError`."""
    if name == "none":
        if params:
            raise ConfigError("drift.params: detector 'none' takes no parameters")
        return None
    cls = DETECTORS.get(name)
    if cls is None:
        raise ConfigError(f"drift.detector: unknown detector {name!r}")
    kwargs = dict(params)
    if name == "kswin":
        kwargs.setdefault("seed", 1)  # KSWIN samples at random; a seed keeps replays exact
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"drift.params: invalid for detector {name!r}: {exc}") from None
