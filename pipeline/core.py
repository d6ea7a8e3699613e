"""The prequential core: for each event, predict -> score -> detect drift -> reweight -> learn.

Pure Python over River estimators; no I/O, no clock in the arithmetic. `driftline evaluate` and
`driftline serve` both call `Pipeline.process`, so offline and live numbers are the same.

Weighting (documented in docs/drift.md):

- ensemble vote: each member that has a prediction votes for it with its weight; the label with the
  largest total wins (a member with no prediction yet abstains);
- member weight: ``exp(sharpness * (a_m - max_k a_k))`` where ``a_m`` is the member's faded
  accuracy ``(num + 1) / (den + 2)`` with ``num <- fading * num + correct``,
  ``den <- fading * den + 1``: between drifts the weights follow recent accuracy;
- on a drift with response ``reweight``: every member's faded accuracy restarts (weights are then
  recomputed from accuracy since the drift), and the drifting member learns the following samples
  with weight ``1 + (boost - 1) * exp(-t / boost_decay)``, ``t`` events after the drift;
- response ``reset`` replaces the drifting member with a fresh clone; ``none`` only counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.drift import make_detector
from pipeline.models import accepts_weight, build_model

if TYPE_CHECKING:
    from driftline.config import Settings

ENSEMBLE = "ensemble"


class NoHealthyModel(RuntimeError):
    """Every configured model has raised: nothing can predict or learn."""


@dataclass(frozen=True)
class ModelStats:
    """What the metrics and `evaluate` report of one model (or of the ensemble)."""

    accuracy: float | None  # prequential: correct / tested, since the model was created
    rolling_accuracy: float | None  # over the last `rolling_window` tested events
    tested: int
    learned: int
    drifts: int
    weight: float  # normalised ensemble weight; 1.0 for the ensemble itself
    last_drift_time: float | None  # unix time of the last detected drift
    failed: bool = False  # the model raised: it no longer predicts or learns


class Score:
    """Prequential and rolling accuracy from plain counts (cheap, picklable, exact).

    The rolling window is a ring buffer of 0/1 outcomes with a running sum.
    """

    __slots__ = ("correct", "ring", "tested", "window_correct")

    def __init__(self, window: int) -> None:
        self.tested = 0
        self.correct = 0
        self.ring = bytearray(window)
        self.window_correct = 0

    def add(self, ok: int) -> None:
        ring = self.ring
        i = self.tested % len(ring)
        self.window_correct += ok - ring[i]
        ring[i] = ok
        self.tested += 1
        self.correct += ok

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.tested if self.tested else None

    @property
    def rolling_accuracy(self) -> float | None:
        n = min(self.tested, len(self.ring))
        return self.window_correct / n if n else None


class Member:
    """One configured model with its detector, score and weighting state."""

    __slots__ = (
        "boost_start",
        "den",
        "detector",
        "drifts",
        "error",
        "last_drift_time",
        "learned",
        "model",
        "name",
        "num",
        "score",
        "takes_weight",
        "weight",
    )

    def __init__(self, name: str, model: Any, detector: Any | None, window: int) -> None:
        self.name = name
        self.model = model
        self.detector = detector
        self.takes_weight = accepts_weight(model)
        self.score = Score(window)
        self.learned = 0
        self.drifts = 0
        self.last_drift_time: float | None = None
        self.boost_start = -1  # labelled-event index of the last drift, -1: no boost
        self.num = 0.0  # faded count of correct predictions
        self.den = 0.0  # faded count of predictions
        self.weight = 1.0
        self.error: str | None = None  # why the model was set aside, once it raised


class Pipeline:
    """A weighted ensemble of River classifiers learning prequentially."""

    def __init__(
        self,
        members: Sequence[Member],
        *,
        response: str = "none",
        boost: float = 2.0,
        boost_decay: float = 200.0,
        fading: float = 0.995,
        sharpness: float = 40.0,
        rolling_window: int = 1000,
    ) -> None:
        if not members:
            raise ValueError("a pipeline needs at least one member")
        self.members = list(members)  # the healthy ones, in configuration order
        self.failed: list[Member] = []  # those whose model raised, kept for reporting
        self.errors: list[tuple[str, str]] = []  # (member, error) raised by the last event
        self.response = response
        self.boost = boost
        self.boost_decay = boost_decay
        self.fading = fading
        self.sharpness = sharpness
        self.ensemble = Score(rolling_window)
        self.labelled = 0
        self.unlabelled = 0
        # Past this many events the boost is below 1e-4 of its start: stop computing it.
        self._boost_horizon = int(boost_decay * math.log(max(boost - 1.0, 1e-12) * 1e4)) + 1

    # --- the prequential step ---------------------------------------------------------------

    def predict(self, x: dict[str, Any]) -> Hashable | None:
        """The ensemble's prediction for `x`, without learning; None before any member can."""
        return self._vote([m.model.predict_one(x) for m in self.members])

    def process(self, x: dict[str, Any], y: Hashable | None = None) -> Hashable | None:
        """Test then train on one event; returns the ensemble's prediction (made before learning).

        An event without a label (`y is None`) only gets a prediction.
        """
        if self.errors:
            self.errors = []
        members = self.members
        if not members:
            raise NoHealthyModel("every configured model has failed")
        raised: list[tuple[Member, Exception]] = []
        preds: list[Hashable | None] = []
        for member in members:
            try:  # free unless it raises (Python 3.11)
                preds.append(member.model.predict_one(x))
            except Exception as exc:  # a model's bug must not take the others down
                preds.append(None)
                raised.append((member, exc))
        if raised:
            preds = self._set_aside(raised, preds)
            members = self.members
            if not members:
                raise NoHealthyModel("every configured model has failed")
        served = self._vote(preds)
        if y is None:
            self.unlabelled += 1
            return served
        step = self.labelled
        self.labelled = step + 1
        if served is not None:
            self.ensemble.add(1 if served == y else 0)

        fading = self.fading
        several = len(members) > 1
        drifted: list[Member] = []
        for member, pred in zip(members, preds, strict=True):
            if pred is None:  # nothing to test yet (as River's progressive_val_score skips it)
                continue
            ok = 1 if pred == y else 0
            member.score.add(ok)
            if several:
                member.num = fading * member.num + ok
                member.den = fading * member.den + 1.0
            detector = member.detector
            if detector is not None:
                detector.update(1 - ok)
                if detector.drift_detected:
                    drifted.append(member)
        for member in drifted:
            self._on_drift(member, step)

        for member in members:
            try:
                if member.boost_start < 0:  # the common case, kept cheap
                    member.model.learn_one(x, y)
                    member.learned += 1
                    continue
                w = self._sample_weight(member, step)
                if w == 1.0:
                    member.model.learn_one(x, y)
                elif member.takes_weight:
                    member.model.learn_one(x, y, w=w)
                else:  # no weight support: a raised weight becomes repeated learning
                    for _ in range(max(1, round(w))):
                        member.model.learn_one(x, y)
                member.learned += 1
            except Exception as exc:
                raised.append((member, exc))
        if raised:
            self._set_aside(raised, [])
            several = len(self.members) > 1
        if several:
            self._reweight_members()
        return served

    def _set_aside(
        self, raised: list[tuple[Member, Exception]], preds: list[Hashable | None]
    ) -> list[Hashable | None]:
        """Move members whose model raised to `failed`; the predictions of those that remain."""
        gone = {id(member) for member, _ in raised}
        kept = [p for m, p in zip(self.members, preds, strict=False) if id(m) not in gone]
        for member, exc in raised:
            member.error = f"{type(exc).__name__}: {exc}"
            member.weight = 0.0
            self.errors.append((member.name, member.error))
            self.failed.append(member)
        self.members = [m for m in self.members if id(m) not in gone]
        return kept

    # --- weighting ------------------------------------------------------------------------

    def _vote(self, preds: list[Hashable | None]) -> Hashable | None:
        if len(preds) == 1:
            return preds[0]
        votes: dict[Hashable, float] = {}
        for member, pred in zip(self.members, preds, strict=True):
            if pred is not None:
                votes[pred] = votes.get(pred, 0.0) + member.weight
        if not votes:
            return None
        return max(votes, key=votes.__getitem__)

    def _on_drift(self, member: Member, step: int) -> None:
        member.drifts += 1
        member.last_drift_time = time.time()
        if self.response == "reset":
            member.model = member.model.clone()
        elif self.response == "reweight":
            member.boost_start = step
            for other in self.members:  # weights now come from accuracy since the drift
                other.num = other.den = 0.0

    def _sample_weight(self, member: Member, step: int) -> float:
        if member.boost_start < 0:
            return 1.0
        age = step - member.boost_start
        if age >= self._boost_horizon:
            member.boost_start = -1
            return 1.0
        return 1.0 + (self.boost - 1.0) * math.exp(-age / self.boost_decay)

    def _reweight_members(self) -> None:
        accs = [(m.num + 1.0) / (m.den + 2.0) for m in self.members]
        best = max(accs)
        sharpness = self.sharpness
        for member, acc in zip(self.members, accs, strict=True):
            member.weight = math.exp(sharpness * (acc - best))

    # --- reporting ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, ModelStats]:
        """Stats of every member and of the ensemble (`"ensemble"`), for metrics and reports."""
        total = sum(m.weight for m in self.members) or 1.0
        out = {
            m.name: ModelStats(
                accuracy=m.score.accuracy,
                rolling_accuracy=m.score.rolling_accuracy,
                tested=m.score.tested,
                learned=m.learned,
                drifts=m.drifts,
                weight=m.weight / total,
                last_drift_time=m.last_drift_time,
                failed=m.error is not None,
            )
            for m in self.members + self.failed
        }
        everyone = self.members + self.failed
        drift_times = [m.last_drift_time for m in everyone if m.last_drift_time is not None]
        out[ENSEMBLE] = ModelStats(
            accuracy=self.ensemble.accuracy,
            rolling_accuracy=self.ensemble.rolling_accuracy,
            tested=self.ensemble.tested,
            learned=self.labelled,
            drifts=sum(m.drifts for m in everyone),
            weight=1.0,
            last_drift_time=max(drift_times) if drift_times else None,
        )
        return out


def build_pipeline(settings: Settings) -> Pipeline:
    """The pipeline that `settings` describe; raises `ConfigError` naming a bad key."""
    drift = settings.drift
    members = [
        Member(
            spec.name,
            build_model(spec.model, f"models[{i}].model"),
            make_detector(drift.detector, drift.params),
            settings.metrics.rolling_window,
        )
        for i, spec in enumerate(settings.models)
    ]
    return Pipeline(
        members,
        response=drift.response,
        boost=drift.boost,
        boost_decay=drift.boost_decay,
        fading=drift.fading,
        sharpness=drift.sharpness,
        rolling_window=settings.metrics.rolling_window,
    )
