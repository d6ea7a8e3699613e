"""The prequential core: for each event, predict -> score -> detect drift -> reweight -> learn.

Pure Python over River estimators; no I/O, no clock in the arithmetic. `driftline evaluate` and
`driftline serve` both call `Pipeline.process`, so offline and live numbers are the same.

Weighting and drift responses (docs/drift.md has the why and the measurements):

- faded accuracy of member m: ``a_m = (num_m + 1) / (den_m + 2)`` with, on each event it is tested
  on, ``num_m <- fading * num_m + correct`` and ``den_m <- fading * den_m + 1``: between drifts
  the weights follow the members' recent accuracy (about ``1 / (1 - fading)`` events);
- member weight: ``w_m = exp(sharpness * (a_m - max_k a_k))``; the vote: each member that has a
  prediction votes for it with its weight, the label with the largest total wins;
- served prediction: the vote, unless the leader (the member with the largest ``a_m``) has been
  more accurate than the vote itself (the vote's faded accuracy ``a_v``, kept the same way): then
  the leader's prediction. The exported weights are the effective ones (1 for the leader, 0 for
  the others, while it is followed);
- a drift is a rise of a member's error rate seen by its detector (pipeline/drift.py);
- response ``reweight``: the accuracies restart from the outcomes since the change (the window a
  two-sided detector kept when it fired, at most ``rolling_window`` events; nothing for the
  others) and ``a_v`` from nothing, so the member that adapts best leads; every member learns the
  samples that follow with weight ``1 + (boost - 1) * exp(-t / boost_decay)``, ``t`` events after
  the drift (a model whose ``learn_one`` takes no ``w`` learns the sample ``round(w)`` times);
- response ``reset`` replaces the drifting member with a fresh clone, whose faded accuracy starts
  from nothing; ``none`` only counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.drift import make_detector, recent_window
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
        "since_errors",
        "since_seen",
        "takes_weight",
        "two_sided",
        "weight",
    )

    def __init__(self, name: str, model: Any, detector: Any | None, window: int) -> None:
        self.name = name
        self.model = model
        self.detector = detector
        # A two-sided detector also fires when the error rate falls: the member's errors since
        # the detector's previous detection tell a rise from a fall.
        self.two_sided = recent_window(detector) is not None if detector is not None else False
        self.since_errors = 0
        self.since_seen = 0
        self.takes_weight = accepts_weight(model)
        self.score = Score(window)
        self.learned = 0
        self.drifts = 0
        self.last_drift_time: float | None = None
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
        sharpness: float = 10.0,
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
        self.boost_start = -1  # labelled-event index of the last drift (reweight); -1: no boost
        self.vote_num = 0.0  # faded accuracy of the weighted vote, as a member's
        self.vote_den = 0.0
        self.lead = 0  # index of the member with the best faded accuracy
        self.follow_lead = False  # serve the leader's prediction instead of the vote
        # Past this many events after a drift the extra weight is below 1e-4: the boost is over.
        self._boost_horizon = int(boost_decay * math.log(max(boost - 1.0, 1e-12) * 1e4)) + 1

    # --- the prequential step ---------------------------------------------------------------

    def predict(self, x: dict[str, Any]) -> Hashable | None:
        """The ensemble's prediction for `x`, without learning; None before any member can."""
        preds = [m.model.predict_one(x) for m in self.members]
        if len(preds) > 1:
            return self._serve(preds)[0]
        return preds[0] if preds else None

    def process(self, x: dict[str, Any], y: Hashable | None = None) -> Hashable | None:
        """Test then train on one event; returns the ensemble's prediction (made before learning).

        An event without a label (`y is None`) only gets a prediction. A member whose model raises
        is set aside for good (`failed`, with the error in `errors` until the next event); with no
        member left, `NoHealthyModel` is raised.
        """
        if self.errors:
            self.errors = []
        if len(self.members) > 1:
            return self._process_ensemble(x, y)
        if not self.members:
            raise NoHealthyModel("every configured model has failed")
        member = self.members[0]  # one model: no vote, no weights; the lean path
        try:  # free unless it raises (Python 3.11)
            pred = member.model.predict_one(x)
        except Exception as exc:  # a model's bug must not stop the service
            self._set_aside([(member, exc)])
            raise NoHealthyModel("every configured model has failed") from exc
        if y is None:
            self.unlabelled += 1
            return pred
        step = self.labelled
        self.labelled = step + 1
        if pred is not None:  # nothing to test yet (as River's progressive_val_score skips it)
            ok = 1 if pred == y else 0
            self.ensemble.add(ok)
            member.score.add(ok)
            if member.detector is not None and self._detect(member, ok):
                self._on_drift(member, step)
        if self.boost_start >= 0:
            self._learn_boosted(x, y, step)
            return pred
        try:
            member.model.learn_one(x, y)
        except Exception as exc:
            self._set_aside([(member, exc)])
            return pred
        member.learned += 1
        return pred

    def _process_ensemble(self, x: dict[str, Any], y: Hashable | None) -> Hashable | None:
        members = self.members
        try:  # free unless it raises (Python 3.11)
            preds = [m.model.predict_one(x) for m in members]
        except Exception:  # a model's bug must not take the others down
            preds = self._predict_guarded(x)
            members = self.members
        served, voted = self._serve(preds)
        if y is None:
            self.unlabelled += 1
            return served
        step = self.labelled
        self.labelled = step + 1
        if served is not None:
            self.ensemble.add(1 if served == y else 0)
        fading = self.fading
        if voted is not None:
            self.vote_num = fading * self.vote_num + (1 if voted == y else 0)
            self.vote_den = fading * self.vote_den + 1.0
        drifted: list[Member] | None = None
        for member, pred in zip(members, preds, strict=True):
            if pred is None:
                continue
            ok = 1 if pred == y else 0
            member.score.add(ok)
            member.num = fading * member.num + ok
            member.den = fading * member.den + 1.0
            if member.detector is not None and self._detect(member, ok):
                drifted = [*drifted, member] if drifted else [member]
        if drifted:
            for member in drifted:
                self._on_drift(member, step)
        if self.boost_start >= 0:
            self._learn_boosted(x, y, step)
        else:  # the common case, kept cheap
            raised: list[tuple[Member, Exception]] = []
            for member in members:
                try:
                    member.model.learn_one(x, y)
                except Exception as exc:
                    raised.append((member, exc))
                    continue
                member.learned += 1
            if raised:
                self._set_aside(raised)
        if self.members:
            self._reweight_members()
        return served

    def _learn_boosted(self, x: dict[str, Any], y: Hashable, step: int) -> None:
        """Every member learns (x, y) with the decaying post-drift weight (response reweight)."""
        age = step - self.boost_start
        if age >= self._boost_horizon:  # the boost has faded out
            self.boost_start = -1
            w = 1.0
        else:
            w = 1.0 + (self.boost - 1.0) * math.exp(-age / self.boost_decay)
        raised: list[tuple[Member, Exception]] = []
        for member in self.members:
            try:
                if w == 1.0:
                    member.model.learn_one(x, y)
                elif member.takes_weight:
                    member.model.learn_one(x, y, w=w)
                else:  # no weight support: a raised weight becomes repeated learning
                    for _ in range(max(1, round(w))):
                        member.model.learn_one(x, y)
            except Exception as exc:
                raised.append((member, exc))
                continue
            member.learned += 1
        if raised:
            self._set_aside(raised)

    # --- models that raise ----------------------------------------------------------------

    def _predict_guarded(self, x: dict[str, Any]) -> list[Hashable | None]:
        """Every member's prediction, one at a time; those that raise are set aside."""
        preds: list[Hashable | None] = []
        raised: list[tuple[Member, Exception]] = []
        for member in self.members:
            try:
                preds.append(member.model.predict_one(x))
            except Exception as exc:
                raised.append((member, exc))
        self._set_aside(raised)
        if not self.members:
            raise NoHealthyModel("every configured model has failed")
        self._reweight_members()  # the leader's index among those left
        return preds

    def _set_aside(self, raised: list[tuple[Member, Exception]]) -> None:
        """Move members whose model raised to `failed`, with their error."""
        gone = {id(member) for member, _ in raised}
        for member, exc in raised:
            member.error = f"{type(exc).__name__}: {exc}"
            member.weight = 0.0
            self.errors.append((member.name, member.error))
            self.failed.append(member)
        self.members = [m for m in self.members if id(m) not in gone]

    # --- drift ----------------------------------------------------------------------------

    @staticmethod
    def _detect(member: Member, ok: int) -> bool:
        """Feed the member's error to its detector; whether that is a drift: a detection that is
        a rise of the member's error rate (a fall is no drift)."""
        detector: Any = member.detector
        detector.update(1 - ok)
        if not member.two_sided:  # a one-sided detector only fires on a rise
            return bool(detector.drift_detected)
        member.since_seen += 1
        member.since_errors += 1 - ok
        if not detector.drift_detected:
            return False
        kept = recent_window(detector)
        before = member.since_errors / member.since_seen
        member.since_errors = member.since_seen = 0  # the detector restarts too
        return kept is not None and kept[1] > before

    def _on_drift(self, member: Member, step: int) -> None:
        member.drifts += 1
        member.last_drift_time = time.time()
        if self.response == "reset":
            member.model = member.model.clone()
            member.num = member.den = 0.0  # the fresh model earns its weight from nothing
        elif self.response == "reweight":
            self.boost_start = step
            kept = recent_window(member.detector)
            self._restart_accuracies(kept[0] if kept is not None else 0)

    def _restart_accuracies(self, events: int) -> None:
        """Every member's faded accuracy from its outcomes over its last `events` tests only
        (those since the change, as the detector sees it); the vote's from nothing."""
        fading = self.fading
        for member in self.members:
            score = member.score
            ring, tested = score.ring, score.tested
            size = len(ring)
            num = den = 0.0
            for i in range(tested - min(events, tested, size), tested):
                num = fading * num + ring[i % size]
                den = fading * den + 1.0
            member.num, member.den = num, den
        self.vote_num = self.vote_den = 0.0

    # --- weighting ------------------------------------------------------------------------

    def _serve(self, preds: list[Hashable | None]) -> tuple[Hashable | None, Hashable | None]:
        """(served, voted): the weighted vote, or the leader's prediction while it does better."""
        votes: dict[Hashable, float] = {}
        for member, pred in zip(self.members, preds, strict=True):
            if pred is not None:
                votes[pred] = votes.get(pred, 0.0) + member.weight
        if not votes:
            return None, None
        voted = max(votes, key=votes.__getitem__)
        if self.follow_lead:
            lead = preds[self.lead]
            if lead is not None:
                return lead, voted
        return voted, voted

    def _reweight_members(self) -> None:
        members = self.members
        accs = [(m.num + 1.0) / (m.den + 2.0) for m in members]
        best = max(accs)
        self.lead = accs.index(best)
        self.follow_lead = (self.vote_num + 1.0) / (self.vote_den + 2.0) < best
        sharpness = self.sharpness
        for member, acc in zip(members, accs, strict=True):
            member.weight = math.exp(sharpness * (acc - best))

    def weights(self) -> list[float]:
        """The members' normalised effective weights in the served prediction."""
        if self.follow_lead and len(self.members) > 1:
            return [1.0 if i == self.lead else 0.0 for i in range(len(self.members))]
        total = sum(m.weight for m in self.members) or 1.0
        return [m.weight / total for m in self.members]

    # --- reporting ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, ModelStats]:
        """Stats of every member and of the ensemble (`"ensemble"`), for metrics and reports."""
        everyone = self.members + self.failed
        weights = self.weights() + [0.0] * len(self.failed)
        out = {
            m.name: ModelStats(
                accuracy=m.score.accuracy,
                rolling_accuracy=m.score.rolling_accuracy,
                tested=m.score.tested,
                learned=m.learned,
                drifts=m.drifts,
                weight=weight,
                last_drift_time=m.last_drift_time,
                failed=m.error is not None,
            )
            for m, weight in zip(everyone, weights, strict=True)
        }
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
