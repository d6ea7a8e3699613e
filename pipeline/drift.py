"""Drift detection over a member's 0/1 error stream: only a rise of the error rate is a drift.

DDM, EDDM, HDDM_A and HDDM_W watch for rises only (River's defaults), and so does Page-Hinkley in
mode "up" (driftline's default). ADWIN and KSWIN are two-sided: a learner whose error falls as it
learns is a change to them too. `RiseDetector` wraps any of them with River's shape (`update(x)`,
then `.drift_detected`) and reports a two-sided detection only when the error rate of the recent
window the detector kept is above the error rate since its previous detection.

>>> detector = RiseDetector(make_detector("adwin", {}))
>>> for error in [0] * 500 + [1] * 100:
...     if detector.update(error).drift_detected:
...         break
>>> detector.drift_detected, detector.recent > 0
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from river import drift
from river.drift import binary

from pipeline.names import DETECTOR_NAMES

DETECTORS: dict[str, Any] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
}
NO_DETECTOR = "none"
assert (*DETECTORS, NO_DETECTOR) == DETECTOR_NAMES

# Where driftline's defaults differ from River's (`params` overrides them):
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # 0.002 in River: on the benchmark suite 0.0005 keeps every known drift found, with fewer
    # detections on Elec2 (and so less boosted learning) and none on the stationary stream.
    "adwin": {"delta": 0.0005},
    "kswin": {"seed": 1},  # KSWIN samples at random; a seed keeps replays exact
    "page_hinkley": {"mode": "up"},  # a rise of the error rate only
}


def make_detector(name: str, params: Mapping[str, Any]) -> Any | None:
    """A fresh River detector by name, or None for "none".

    Raises `LookupError` for an unknown name and `ValueError` for parameters the detector
    does not take.
    """
    if name == NO_DETECTOR:
        if params:
            raise ValueError("detector 'none' takes no parameters")
        return None
    cls = DETECTORS.get(name)
    if cls is None:
        raise LookupError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
    try:
        return cls(**{**DEFAULT_PARAMS.get(name, {}), **params})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid parameters for detector {name!r}: {exc}") from None


class RiseDetector:
    """A River detector of which only rises of the error rate count as drifts.

    Parameters
    ----------
    detector
        A River drift detector, fed 1 for an error and 0 for a correct prediction.

    Attributes
    ----------
    drift_detected
        Whether the last `update` found a rise.
    recent
        On a detection by a two-sided detector: how many of the latest events it kept as
        "since the change" (0 for the one-sided ones, which keep no window).
    """

    __slots__ = ("_errors", "_seen", "detector", "drift_detected", "recent", "two_sided")

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.two_sided = isinstance(detector, drift.ADWIN | drift.KSWIN)
        self.drift_detected = False
        self.recent = 0
        self._seen = 0  # events and errors since the previous detection (two-sided only)
        self._errors = 0

    def clone(self) -> RiseDetector:
        return RiseDetector(self.detector.clone())

    def update(self, x: int) -> RiseDetector:
        detector = self.detector
        detector.update(x)
        if not self.two_sided:
            self.drift_detected = detector.drift_detected
            return self
        self._seen += 1
        self._errors += x
        if not detector.drift_detected:
            self.drift_detected = False
            return self
        events, rate = _kept_window(detector)
        before = self._errors / self._seen
        self._seen = self._errors = 0  # the detector restarts too
        self.recent = events
        self.drift_detected = rate > before
        return self


def _kept_window(detector: Any) -> tuple[int, float]:
    """(events, error rate) of the part of the stream a two-sided detector kept when it fired:
    the part since the change it found. Read right after the detection (River's detectors
    restart on the update after one)."""
    if isinstance(detector, drift.ADWIN):
        return int(detector.width), float(detector.estimation)
    window = detector.window  # KSWIN keeps its last `stat_size` values on a detection
    return len(window), (sum(window) / len(window) if window else 0.0)
