"""Prequential scores of one model: counts since it was created and over a rolling window.

Accuracy, macro-F1 and per-class recall, from plain counts (cheap to update, picklable, exact):
with the same (y, prediction) pairs they equal River's `metrics.Accuracy`, `metrics.MacroF1` and
`metrics.Recall(pos_val=c)`, and over the window `utils.Rolling` of those.

>>> score = Score(window=2)
>>> for y, pred in [("a", "a"), ("b", "a"), ("b", "b")]:
...     _ = score.add(y, pred)
>>> score.accuracy, score.rolling_accuracy
(0.6666666666666666, 0.5)
>>> round(score.f1, 4), score.recall
(0.6667, {'a': 1.0, 'b': 0.5})
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterable, Mapping
from typing import Any


class Counts:
    """A confusion summary: per class, how often it was true, predicted, and both."""

    __slots__ = ("hits", "predicted", "truth")

    def __init__(self) -> None:
        self.truth: dict[Hashable, int] = {}
        self.predicted: dict[Hashable, int] = {}
        self.hits: dict[Hashable, int] = {}

    def add(self, y: Hashable, pred: Hashable) -> None:
        truth, predicted = self.truth, self.predicted
        truth[y] = truth.get(y, 0) + 1
        predicted[pred] = predicted.get(pred, 0) + 1
        if y == pred:
            self.hits[y] = self.hits.get(y, 0) + 1

    @classmethod
    def of_pairs(cls, pairs: Mapping[tuple[Hashable, Hashable], int]) -> Counts:
        """The counts of (y, prediction) pairs counted `pairs[(y, prediction)]` times."""
        counts = cls()
        truth, predicted, hits = counts.truth, counts.predicted, counts.hits
        for (y, pred), k in pairs.items():
            truth[y] = truth.get(y, 0) + k
            predicted[pred] = predicted.get(pred, 0) + k
            if y == pred:
                hits[y] = hits.get(y, 0) + k
        return counts

    @classmethod
    def of(cls, pairs: Iterable[tuple[Hashable, Hashable]]) -> Counts:
        counts = cls()
        for y, pred in pairs:
            counts.add(y, pred)
        return counts

    def f1(self) -> float | None:
        """Macro-F1 over the classes seen as truth or prediction (River's `MacroF1`)."""
        classes = self.truth.keys() | self.predicted.keys()
        if not classes:
            return None
        total = 0.0
        for c in classes:
            hits = self.hits.get(c, 0)
            if hits:
                p = hits / self.predicted[c]
                r = hits / self.truth[c]
                total += 2 * p * r / (p + r)
        return total / len(classes)

    def recall(self) -> dict[Hashable, float]:
        """Per class that was ever the truth: the share of its events predicted as it."""
        return {c: self.hits.get(c, 0) / n for c, n in self.truth.items()}


class Score:
    """Prequential scores, cumulative and over the last `window` tested events.

    Each event costs a few list writes: its (label, prediction) pair goes into a ring, and the
    per-class counts are made from the ring only when read (a count of the ring's distinct
    pairs, in C) or when the ring is about to overwrite pairs not counted yet.

    Parameters
    ----------
    window
        Size of the rolling window.
    """

    __slots__ = (
        "_recent",
        "all",
        "correct",
        "folded",
        "ring",
        "ring_ok",
        "tested",
        "window",
        "window_correct",
    )

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.tested = 0
        self.correct = 0
        self.ring_ok = bytearray(window)  # the last `window` outcomes, 1 when right
        self.ring: list[Any] = [None] * window  # (y, prediction) pairs
        self.window_correct = 0
        self.all = Counts()  # every pair up to event `folded`
        self.folded = 0
        self._recent: tuple[int, Counts] | None = None  # (tested, the ring's counts)

    def add(self, y: Hashable, pred: Hashable) -> int:
        """Score one prediction; returns 1 if it was right, else 0. (The hot path.)"""
        tested = self.tested
        if tested - self.folded == self.window:  # the oldest pair not counted yet goes next
            self._fold()
        ok = 1 if pred == y else 0
        i = tested % self.window
        ring_ok = self.ring_ok
        self.window_correct += ok - ring_ok[i]
        ring_ok[i] = ok
        self.ring[i] = (y, pred)
        self.tested = tested + 1
        self.correct += ok
        return ok

    def _fold(self) -> None:
        """Count the pairs of the ring not counted yet into `all`."""
        n = self.tested - self.folded
        if not n:
            return
        ring, size = self.ring, self.window
        start = self.folded % size
        stop = start + n
        chunk = ring[start:stop] if stop <= size else ring[start:] + ring[: stop - size]
        counts = self.all
        truth, predicted, hits = counts.truth, counts.predicted, counts.hits
        for (y, pred), k in collections.Counter(chunk).items():
            truth[y] = truth.get(y, 0) + k
            predicted[pred] = predicted.get(pred, 0) + k
            if y == pred:
                hits[y] = hits.get(y, 0) + k
        self.folded = self.tested

    def _window_counts(self) -> Counts:
        cached = self._recent
        if cached is not None and cached[0] == self.tested:
            return cached[1]
        counts = Counts.of_pairs(collections.Counter(self.ring[: min(self.tested, self.window)]))
        self._recent = (self.tested, counts)
        return counts

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        _, slots = state
        if "ring" not in slots:  # pickled by an older version: its counts are all folded
            slots = dict(slots)
            ring = list(zip(slots.pop("ring_y"), slots.pop("ring_pred"), strict=True))
            n = min(slots["tested"], slots["window"])
            slots["ring"] = [pair if k < n else None for k, pair in enumerate(ring)]
            slots["folded"] = slots["tested"]
        slots.setdefault("_recent", None)
        for name, value in slots.items():
            setattr(self, name, value)

    def last_outcomes(self, n: int) -> list[int]:
        """The 0/1 outcomes of the last `n` tests (at most the window), oldest first."""
        ring, tested = self.ring_ok, self.tested
        size = len(ring)
        return [ring[i % size] for i in range(tested - min(n, tested, size), tested)]

    @property
    def recent(self) -> Counts:
        """The per-class counts of the last `window` tested events."""
        return self._window_counts()

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.tested if self.tested else None

    @property
    def rolling_accuracy(self) -> float | None:
        n = min(self.tested, len(self.ring_ok))
        return self.window_correct / n if n else None

    @property
    def f1(self) -> float | None:
        self._fold()
        return self.all.f1()

    @property
    def rolling_f1(self) -> float | None:
        return self._window_counts().f1()

    @property
    def recall(self) -> Mapping[Hashable, float]:
        self._fold()
        return self.all.recall()

    @property
    def rolling_recall(self) -> Mapping[Hashable, float]:
        return self._window_counts().recall()
