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

from collections.abc import Hashable, Iterable, Mapping


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

    def remove(self, y: Hashable, pred: Hashable, hit: int) -> None:
        """Undo `add(y, pred)` (`hit`: whether y == pred); a class counted nowhere is dropped,
        as if it had never been seen."""
        truth, predicted = self.truth, self.predicted
        if truth[y] == 1:
            del truth[y]
        else:
            truth[y] -= 1
        if predicted[pred] == 1:
            del predicted[pred]
        else:
            predicted[pred] -= 1
        if hit:
            hits = self.hits
            if hits[y] == 1:
                del hits[y]
            else:
                hits[y] -= 1

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

    Parameters
    ----------
    window
        Size of the rolling window.
    """

    __slots__ = (
        "all",
        "correct",
        "recent",
        "ring_ok",
        "ring_pred",
        "ring_y",
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
        # The last `window` outcomes, labels and predictions: the oldest leaves the rolling
        # counts as the newest enters (a few dict updates an event, where counting the window
        # again on every read cost more than the model on a one-model service).
        self.ring_ok = bytearray(window)
        self.ring_y: list[Hashable] = [None] * window
        self.ring_pred: list[Hashable] = [None] * window
        self.window_correct = 0
        self.all = Counts()
        self.recent = Counts()

    def add(self, y: Hashable, pred: Hashable) -> int:
        """Score one prediction; returns 1 if it was right, else 0. (The hot path: inlined.)"""
        counts = self.all
        truth, predicted = counts.truth, counts.predicted
        truth[y] = truth.get(y, 0) + 1
        predicted[pred] = predicted.get(pred, 0) + 1
        if pred == y:
            ok = 1
            hits = counts.hits
            hits[y] = hits.get(y, 0) + 1
        else:
            ok = 0
        tested = self.tested
        i = tested % self.window
        ring_ok, ring_y, ring_pred = self.ring_ok, self.ring_y, self.ring_pred
        recent = self.recent
        if tested >= self.window:  # the oldest outcome leaves the window
            recent.remove(ring_y[i], ring_pred[i], ring_ok[i])
        truth, predicted = recent.truth, recent.predicted  # recent.add(y, pred), inlined
        truth[y] = truth.get(y, 0) + 1
        predicted[pred] = predicted.get(pred, 0) + 1
        if ok:
            hits = recent.hits
            hits[y] = hits.get(y, 0) + 1
        self.window_correct += ok - ring_ok[i]
        ring_ok[i] = ok
        ring_y[i] = y
        ring_pred[i] = pred
        self.tested = tested + 1
        self.correct += ok
        return ok

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        # A checkpoint of an older version has no rolling counts: they are made from its ring.
        _, slots = state
        for name, value in slots.items():
            setattr(self, name, value)
        if "recent" not in slots:
            n = min(self.tested, self.window)
            start = self.tested - n
            order = [(start + k) % self.window for k in range(n)]
            self.recent = Counts.of((self.ring_y[j], self.ring_pred[j]) for j in order)

    def last_outcomes(self, n: int) -> list[int]:
        """The 0/1 outcomes of the last `n` tests (at most the window), oldest first."""
        ring, tested = self.ring_ok, self.tested
        size = len(ring)
        return [ring[i % size] for i in range(tested - min(n, tested, size), tested)]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.tested if self.tested else None

    @property
    def rolling_accuracy(self) -> float | None:
        n = min(self.tested, len(self.ring_ok))
        return self.window_correct / n if n else None

    @property
    def f1(self) -> float | None:
        return self.all.f1()

    @property
    def rolling_f1(self) -> float | None:
        return self.recent.f1()

    @property
    def recall(self) -> Mapping[Hashable, float]:
        return self.all.recall()

    @property
    def rolling_recall(self) -> Mapping[Hashable, float]:
        return self.recent.recall()
