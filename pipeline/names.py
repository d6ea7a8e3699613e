"""Names the configuration and the reports share with the learning core, without River (so that
reading a configuration does not pay for importing it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable

ENSEMBLE = "ensemble"  # the name under which the served prediction is reported
RESPONSES = ("reweight", "reset", "none")  # what a detected drift does
DETECTOR_NAMES = ("adwin", "page_hinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w", "none")
RESET_REASONS = ("drift", "failures", "non_finite")  # why a member was replaced


def class_names(classes: Iterable[Hashable]) -> dict[Hashable, str]:
    """Each class's name in a report or a metric's `class` label: its text, unless another class
    has the same text (the label 1 and the label "1", which a producer may mix): then a class
    that is not a string gets its type added, "1 (int)". Two classes never share a name (one
    Prometheus series, or one JSON key, would hide the other)."""
    names = {c: str(c) for c in classes}
    taken = Counter(names.values())
    for c, text in names.items():
        if taken[text] > 1 and not isinstance(c, str):
            names[c] = f"{text} ({type(c).__name__})"
    return names
