"""Drift detectors, by configuration name, over a member's 0/1 error stream.

Only a rise of the error rate is a drift for driftline (docs/drift.md). DDM, EDDM, HDDM_A and
HDDM_W watch for rises only (River's defaults), and so does Page-Hinkley, whose `mode` driftline
sets to "up" unless `params` says otherwise. ADWIN and KSWIN are two-sided: a learner's error that
falls as it learns is a change to them too. For those two, `recent_window` gives the recent part
of the stream the detector kept when it fired, and the pipeline counts the detection only if its
error rate is above the member's error rate since the previous detection.
"""

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


# Where driftline's defaults differ from River's (`params` overrides them):
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # 0.002 in River: on the benchmark suite 0.0005 keeps every known drift found, with fewer
    # detections on Elec2 (and so less boosted learning) and none on the stationary stream.
    "adwin": {"delta": 0.0005},
    "kswin": {"seed": 1},  # KSWIN samples at random; a seed keeps replays exact
    "page_hinkley": {"mode": "up"},  # a rise of the error rate only
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
    kwargs = {**DEFAULT_PARAMS.get(name, {}), **params}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"drift.params: invalid for detector {name!r}: {exc}") from None


def recent_window(detector: Any) -> tuple[int, float] | None:
    """For a two-sided detector, (events, error rate) of the recent part of the stream it keeps:
    read right after it fired, the part since the change it found. None for the others (they
    fire on rises only and keep no window).

    River's detectors restart on the update after a detection, so this is read before that.
    """
    if isinstance(detector, drift.ADWIN):
        # On a detection ADWIN drops the older part of its window; the rest is since the change.
        return int(detector.width), float(detector.estimation)
    if isinstance(detector, drift.KSWIN):
        # On a detection KSWIN keeps its last `stat_size` values only.
        window = detector.window
        return len(window), (sum(window) / len(window) if window else 0.0)
    return None
