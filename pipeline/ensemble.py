"""A weighted ensemble of River classifiers that learns prequentially and reacts to drift.

For each labelled event (`DriftEnsemble.step`): every member predicts, the served prediction is
the weighted vote of the members, every member's and the ensemble's scores are updated, each
member's detector sees its error, a drift triggers the configured response, and every member
learns the event. `predict` and `learn` are the two halves of the step, for labels that arrive
later than their event (the prediction made at arrival is kept and scored when the label comes).

Weighting and drift responses (docs/drift.md has the why and the measurements):

- faded accuracy of member m: ``a_m = (num_m + 1) / (den_m + 2)`` with, on each event it is tested
  on, ``num_m <- fading * num_m + correct`` and ``den_m <- fading * den_m + 1``;
- member weight: ``w_m = exp(sharpness * (a_m - max_k a_k))``; the vote: each member that has a
  prediction votes for it with its weight, the label with the largest total wins;
- served prediction: the vote, unless the leader (the member with the largest ``a_m``) has been
  more accurate than the vote itself (the vote's faded accuracy ``a_v``, kept the same way): then
  the leader's prediction. Reported weights are the effective ones (1 for a followed leader);
- a drift is a rise of a member's error rate (`pipeline.drift.RiseDetector`);
- response ``reweight``: the faded accuracies restart from the outcomes since the change (the
  window a two-sided detector kept, at most `window` events; nothing for the others) and ``a_v``
  from nothing; every member learns the samples that follow with weight
  ``1 + (boost - 1) * exp(-t / boost_decay)``, ``t`` events after the drift (a model whose
  ``learn_one`` takes no ``w`` learns the sample ``round(w)`` times);
- response ``reset`` replaces the drifting member with a fresh copy; ``none`` only counts.

Members that do not pay for themselves sleep: a member whose faded accuracy stays more than
`sleep_margin` below the leader's for `sleep_after` labelled events in a row stops predicting and
learning (its cost is saved; its weight is 0; its model is replaced by a fresh copy at once, so
it holds no memory). Every sleeping member wakes, as a fresh copy, when the leader detects a
drift (the concept changed: the race starts again) and every `wake_every` labelled events (a
change no detector flags). The leader never sleeps.

Members that scale their events (`Scaled`: the linear and kNN presets) share one scaler, which
learns and scales each labelled event once for all of them instead of once each (the same
numbers while every member is awake and learns with weight 1); a member reset or woken keeps
it, so a fresh model starts on the stream's scaling.

A member that raises on an event does not stop the others: the failure is reported in the
step's outcome, and after `reset_after` consecutive failures the member is replaced by a fresh
copy. A member whose probabilities stop being finite numbers (its state was poisoned) is
replaced at once. Both count as resets, by reason.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from river import base

from pipeline.drift import RiseDetector
from pipeline.names import ENSEMBLE, RESPONSES
from pipeline.onevsrest import Scaled
from pipeline.preprocessing import SharedScaler
from pipeline.presets import accepts_weight
from pipeline.scoring import Score


class LimitExceeded(ValueError):
    """An event that would grow the learning state past a configured bound (it is not learned).

    `reason` is a short tag: ``too_many_classes`` or ``too_many_feature_names``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def argmax(scores: Mapping[Hashable, float]) -> Hashable:
    """The key of the largest value, the first one at a tie: `max(scores, key=scores.get)`,
    twice as fast on two keys (a binary model's probabilities, a vote between two labels),
    which is once or more per event."""
    if len(scores) == 2:
        (a, score_a), (b, score_b) = scores.items()
        return b if score_b > score_a else a
    return max(scores, key=scores.__getitem__)


class Prediction(NamedTuple):
    """What the ensemble predicted for one event, before learning it. (A tuple: cheap to make
    per event.)"""

    label: Hashable | None  # the served prediction; None while no member can predict
    proba: Mapping[Hashable, float]  # the served probabilities
    model: str  # the member followed, or "ensemble" for the weighted vote
    members: tuple[Hashable | None, ...]  # each member's prediction, None where it had none
    voted: Hashable | None  # the weighted vote (equal to `label` unless a leader is followed)
    failed: tuple[tuple[str, str], ...] = ()  # (member, error) of members that raised


class Step(NamedTuple):
    """The outcome of one event: its prediction, who failed on it, whether anyone handled it."""

    prediction: Prediction
    failed: tuple[tuple[str, str], ...] = ()  # (member, error), predicting or learning
    handled: bool = True  # False when no member could predict (and learn) it


@dataclass(frozen=True)
class ModelStats:
    """What the metrics and `evaluate` report of one model (or of the ensemble)."""

    accuracy: float | None  # prequential: correct / tested, since the model was created
    rolling_accuracy: float | None  # over the last `window` tested events
    tested: int
    learned: int
    drifts: int
    weight: float  # normalised ensemble weight; 1.0 for the ensemble itself
    last_drift_time: float | None  # unix time of the last detected drift
    failed: bool = False  # the model raised on its most recent event
    failures: int = 0  # events on which it raised, in all
    resets: Mapping[str, int] = field(default_factory=dict)  # reason -> times replaced
    f1: float | None = None  # prequential macro-F1
    rolling_f1: float | None = None
    recall: Mapping[Hashable, float] = field(default_factory=dict)  # class -> recall
    rolling_recall: Mapping[Hashable, float] = field(default_factory=dict)
    active: bool = True  # False while the member sleeps (it neither predicts nor learns)


class HardVotes:
    """Probabilities for a classifier that only predicts a label: 1 for its label."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba_one(self, x: dict) -> dict[Hashable, float]:
        label = self.model.predict_one(x)
        return {} if label is None else {label: 1.0}

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:
        self.model.learn_one(x, y, **kwargs)


def _with_proba(model: Any) -> Any:
    method = getattr(type(model), "predict_proba_one", None)
    return HardVotes(model) if method in (None, base.Classifier.predict_proba_one) else model


class Member:
    """One model of the ensemble with its detector, score and weighting state."""

    __slots__ = (
        "awake",
        "behind",
        "den",
        "detector",
        "drifts",
        "failures",
        "fresh",
        "last_drift_time",
        "learned",
        "model",
        "name",
        "num",
        "resets",
        "score",
        "shared",
        "sleeps",
        "streak",
        "takes_weight",
        "weight",
    )

    def __init__(self, name: str, model: Any, detector: RiseDetector | None, window: int):
        self.name = name
        model = _with_proba(model)
        self.fresh = copy.deepcopy(model)  # what a reset starts again from
        self.model = model
        self.detector = detector
        self.takes_weight = accepts_weight(model.model if isinstance(model, HardVotes) else model)
        self.score = Score(window)
        self.learned = 0
        self.drifts = 0
        self.last_drift_time: float | None = None
        self.num = 0.0  # faded count of correct predictions
        self.den = 0.0  # faded count of predictions
        self.weight = 1.0
        self.failures = 0  # events it raised on, in all
        self.streak = 0  # consecutive events it raised on
        self.resets: dict[str, int] = {}
        self.awake = True
        self.behind = 0  # labelled events in a row it has been far behind the leader
        self.sleeps = 0  # times it was put to sleep
        self.shared: SharedScaler | None = None  # the ensemble's scaler, if its model uses it

    def __setstate__(self, state: Any) -> None:
        # A checkpoint of an older version may lack slots added since: they take their defaults.
        _, slots = state if isinstance(state, tuple) else (None, state)
        defaults = {"awake": True, "behind": 0, "sleeps": 0, "failures": 0, "streak": 0,
                    "shared": None}
        for name, value in {**defaults, **(slots or {})}.items():
            setattr(self, name, value)
        if not hasattr(self, "resets"):
            self.resets = {}

    def reset(self, reason: str | None) -> None:
        """Replace the model by a fresh copy; its weight is earned again from nothing. Counted
        under `reason` (None: a sleeping member woken as a fresh copy, not counted)."""
        self.model = copy.deepcopy(self.fresh)
        if self.shared is not None:  # a fresh model, but the stream's scaling goes on
            self.model.scaler = self.shared
        self.num = self.den = 0.0
        self.streak = 0
        self.behind = 0
        if reason is not None:
            self.resets[reason] = self.resets.get(reason, 0) + 1


class DriftEnsemble(base.Classifier):
    """A weighted ensemble of classifiers with drift detection and response.

    It is itself a River classifier (`predict_proba_one`, `predict_one`, `learn_one`), so it
    runs in River's `evaluate.progressive_val_score`; `learn_one` is a whole prequential step.

    Parameters
    ----------
    models
        Member name -> River classifier (not yet trained). Each member gets its own copy.
    detector
        A River drift detector, copied for each member; None for no drift detection.
    response
        What a detected drift does: "reweight", "reset" or "none".
    boost, boost_decay
        Response "reweight": the sample weight right after a drift and the number of events
        over which its excess decays by a factor e.
    fading, sharpness
        How quickly the faded accuracies forget, and how strongly weights favour the best.
    window
        Size of the rolling window of the scores.
    reset_after
        Consecutive failures after which a member is replaced by a fresh copy.
    sleep_margin, sleep_after, wake_every
        A member more than `sleep_margin` below the leader's faded accuracy for `sleep_after`
        labelled events in a row sleeps until a drift or the next `wake_every` labelled
        events; `sleep_margin=None` keeps every member awake.
    max_classes, max_feature_names
        Bounds on the distinct labels and feature names the state may hold; an event past
        either raises `LimitExceeded` and is not learned.
    share_scaler
        Members that scale their events with a fresh `TypedScaler` (`Scaled` models: the
        linear and kNN presets) share one `SharedScaler`, which learns and scales each event
        once for all of them; a member reset or woken keeps it.

    Examples
    --------
    >>> from river import datasets, evaluate, linear_model, metrics, tree
    >>> model = DriftEnsemble({
    ...     "lr": linear_model.LogisticRegression(),
    ...     "tree": tree.HoeffdingTreeClassifier(),
    ... })
    >>> evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy())
    Accuracy: 87.84%
    >>> model.stats()["ensemble"].accuracy == model.stats()["ensemble"].accuracy
    True
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        detector: Any | None = None,
        response: str = "reweight",
        boost: float = 2.0,
        boost_decay: float = 200.0,
        fading: float = 0.995,
        sharpness: float = 10.0,
        window: int = 1000,
        reset_after: int = 10,
        max_classes: int = 100,
        max_feature_names: int = 1000,
        sleep_margin: float | None = None,
        sleep_after: int = 2000,
        wake_every: int = 20_000,
        share_scaler: bool = True,
    ) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        if response not in RESPONSES:
            raise ValueError(f"response must be one of {', '.join(RESPONSES)}, got {response!r}")
        if ENSEMBLE in models:
            raise ValueError(f"{ENSEMBLE!r} names the ensemble itself, not a member")
        self.models = dict(models)
        self.detector = detector
        self.response = response
        self.boost = boost
        self.boost_decay = boost_decay
        self.fading = fading
        self.sharpness = sharpness
        self.window = window
        self.reset_after = reset_after
        self.max_classes = max_classes
        self.max_feature_names = max_feature_names
        self.sleep_margin = sleep_margin
        self.sleep_after = sleep_after
        self.wake_every = wake_every
        self.members = [
            Member(
                name,
                copy.deepcopy(model),
                RiseDetector(detector.clone()) if detector is not None else None,
                window,
            )
            for name, model in self.models.items()
        ]
        self.share_scaler = share_scaler
        self.shared_scaler = self._share_scaler() if share_scaler else None
        # With one member the served prediction is the member's: one score serves both.
        self.solo = len(self.members) == 1
        self.score = self.members[0].score if self.solo else Score(window)
        self.labelled = 0
        self.unlabelled = 0
        self.unhandled = 0  # events no member could handle
        self.classes: set[Hashable] = set()
        self.feature_names: set[str] = set()
        self.boost_start = -1  # labelled-event index of the last drift (reweight); -1: no boost
        self.vote_num = 0.0  # faded accuracy of the weighted vote, as a member's
        self.vote_den = 0.0
        self.lead = 0  # index of the member with the best faded accuracy
        self.follow_lead = False  # serve the leader's prediction instead of the vote
        # Past this many events after a drift the extra weight is below 1e-4: the boost is over.
        self._boost_horizon = int(boost_decay * math.log(max(boost - 1.0, 1e-12) * 1e4)) + 1

    @property
    def _multiclass(self) -> bool:
        return True

    def _share_scaler(self) -> SharedScaler | None:
        # The same arithmetic on the same events, done once: it cost each member as much as
        # its model on tens of features. Only scalers that have learned nothing are replaced.
        scaled = [m for m in self.members if type(m.model) is Scaled and not m.model.scaler.stats]
        if len(scaled) < 2:
            return None
        shared = SharedScaler()
        for member in scaled:
            member.model.scaler = member.shared = shared
        return shared

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A checkpoint of an older version may lack settings added since: they take their
        # defaults (those of `__init__`), so an upgrade carries on from it.
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        # `solo` is newer than some checkpoints: theirs keep two scores, so both are kept up.
        # `shared_scaler` is too: theirs keep a scaler per member, as they were made.
        self.__dict__.update({**defaults, "solo": False, "shared_scaler": None, **state})

    # --- River's interface ----------------------------------------------------------------

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Any, float]:
        return dict(self.predict(x).proba)

    def predict_one(self, x: dict, **kwargs: Any) -> Any:
        return self.predict(x).label

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:
        self.step(x, y)

    # --- the prequential step -------------------------------------------------------------

    def step(self, x: dict[str, Any], y: Hashable | None = None) -> Step:
        """Test then train on one event; an event without a label (`y is None`) is only
        predicted. Raises `LimitExceeded` (before any model sees it) for an event past a bound."""
        self.check(x, y)
        if self.solo and y is not None:
            return self._solo_step(x, y)
        prediction = self.predict(x)
        if y is None:
            self.unlabelled += 1
            handled = any(p is not None for p in prediction.members) or not prediction.failed
            if not handled:
                self.unhandled += 1
            return Step(prediction, prediction.failed, handled)
        return self.learn(x, y, prediction)

    def _solo_step(self, x: dict[str, Any], y: Hashable) -> Step:
        """`learn(x, y, predict(x))` for a single member, in one pass: the most common service
        (one model) pays for no vote. A member that raises takes the general path."""
        member = self.members[0]
        try:
            proba = member.model.predict_proba_one(x)
            total = sum(proba.values())
        except Exception:
            return self.learn(x, y, self.predict(x))  # counts the failure once, as always
        if total - total != 0.0:  # NaN or infinite: as `predict`
            return self.learn(x, y, self.predict(x))
        pred = argmax(proba) if proba else None
        prediction = Prediction(pred, proba, member.name, (pred,), pred)
        step_index = self.labelled
        self.labelled = step_index + 1
        if pred is not None:
            ok = member.score.add(y, pred)
            fading = self.fading
            member.num = fading * member.num + ok
            member.den = fading * member.den + 1.0
            detector = member.detector
            if detector is not None and detector.update(1 - ok).drift_detected:
                self._on_drift(member, step_index)
        w = self._sample_weight(step_index) if self.boost_start >= 0 else 1.0
        try:
            if w == 1.0:
                member.model.learn_one(x, y)
            elif member.takes_weight:
                member.model.learn_one(x, y, w=w)
            else:
                for _ in range(max(1, round(w))):
                    member.model.learn_one(x, y)
        except Exception as exc:
            return self._failures(prediction, [(member, exc)])
        member.learned += 1
        member.streak = 0
        return Step(prediction, (), True)

    def check(self, x: dict[str, Any], y: Hashable | None) -> None:
        """Raise `LimitExceeded` if learning (x, y) would pass a bound of the state."""
        names = self.feature_names
        if not names.issuperset(x):
            new = x.keys() - names
            if len(names) + len(new) > self.max_feature_names:
                raise LimitExceeded(
                    "too_many_feature_names",
                    f"{len(new)} new feature names; the state holds {len(names)} of at most "
                    f"{self.max_feature_names}",
                )
            names.update(new)
        if y is not None and y not in self.classes:
            if len(self.classes) >= self.max_classes:
                raise LimitExceeded(
                    "too_many_classes",
                    f"a new class; the state holds {len(self.classes)} of at most "
                    f"{self.max_classes}",
                )
            self.classes.add(y)

    def predict(self, x: dict[str, Any]) -> Prediction:
        """Every member's prediction and the served one, without learning or scoring."""
        members = self.members
        preds: list[Hashable | None] = []
        probas: list[Mapping[Hashable, float] | None] = []
        failed: list[tuple[str, str]] | None = None
        votes: dict[Hashable, float] = {}  # label -> the weights of its predictors
        shared = self.shared_scaler
        if shared is not None:
            shared.expect(x)
        for member in members:
            if not member.awake:
                preds.append(None)
                probas.append(None)
                continue
            try:
                proba = member.model.predict_proba_one(x)
                total = sum(proba.values())
                if total - total != 0.0:  # NaN or infinite: the state was poisoned
                    member.reset("non_finite")
                    proba = {}
            except Exception as exc:  # a model's bug must not take the others down
                failed = failed or []
                failed.append((member.name, f"{type(exc).__name__}: {exc}"))
                member.failures += 1
                member.streak += 1
                if member.streak >= self.reset_after:
                    member.reset("failures")
                preds.append(None)
                probas.append(None)
                continue
            if proba:
                pred = argmax(proba)
                votes[pred] = votes.get(pred, 0.0) + member.weight
            else:
                pred = None
            preds.append(pred)
            probas.append(proba)
        if shared is not None:
            shared.expect(None)
        failures = tuple(failed) if failed else ()
        if len(members) == 1:
            only = probas[0]
            return Prediction(
                preds[0], only or {}, members[0].name, tuple(preds), preds[0], failures
            )
        label, voted, model = self._serve(preds, votes)
        proba = self._mix(probas) if model == ENSEMBLE else (probas[self.lead] or {})
        return Prediction(label, proba, model, tuple(preds), voted, failures)

    def learn(self, x: dict[str, Any], y: Hashable, prediction: Prediction) -> Step:
        """Score `prediction` (made for `x` before any later learning) against `y`, feed the
        detectors, respond to drift, and let every member learn (x, y)."""
        step_index = self.labelled
        self.labelled = step_index + 1
        fading = self.fading
        if not self.solo:
            if prediction.label is not None:
                self.score.add(y, prediction.label)
            if prediction.voted is not None:
                self.vote_num = fading * self.vote_num + (1 if prediction.voted == y else 0)
                self.vote_den = fading * self.vote_den + 1.0
        drifted: list[Member] | None = None
        for member, pred in zip(self.members, prediction.members, strict=True):
            if pred is None:
                continue
            ok = member.score.add(y, pred)
            member.num = fading * member.num + ok
            member.den = fading * member.den + 1.0
            detector = member.detector
            if detector is not None and detector.update(1 - ok).drift_detected:
                drifted = [*drifted, member] if drifted else [member]
        if drifted:
            for member in drifted:
                self._on_drift(member, step_index)
        w = self._sample_weight(step_index) if self.boost_start >= 0 else 1.0
        raised: list[tuple[Member, Exception]] | None = None
        clean = not prediction.failed
        shared = self.shared_scaler
        if shared is not None:
            shared.expect(x, learning=True)
        for member in self.members:
            if not member.awake:
                continue
            try:
                if w == 1.0:
                    member.model.learn_one(x, y)
                elif member.takes_weight:
                    member.model.learn_one(x, y, w=w)
                else:  # no weight support: a raised weight becomes repeated learning
                    for _ in range(max(1, round(w))):
                        member.model.learn_one(x, y)
            except Exception as exc:
                raised = raised or []
                raised.append((member, exc))
                continue
            member.learned += 1
            if member.streak and clean:
                member.streak = 0
        if shared is not None:
            shared.expect(None)
        if len(self.members) > 1:
            accs = self._reweight()
            if self.sleep_margin is not None:
                self._doze(step_index, accs)
        if raised is None and clean:  # the common case
            return Step(prediction, (), True)
        return self._failures(prediction, raised or [])

    def _failures(self, prediction: Prediction, raised: list[tuple[Member, Exception]]) -> Step:
        """The step of an event some members raised on: count each member's failure once (in
        predicting or learning), reset a member after `reset_after` failures in a row."""
        failed = list(prediction.failed)
        predicted_failed = {name for name, _ in prediction.failed}
        learn_failed = {member.name for member, _ in raised}
        for member in self.members:
            if member.name not in predicted_failed and member.name not in learn_failed:
                member.streak = 0  # it handled this event
        for member, exc in raised:
            failed.append((member.name, f"{type(exc).__name__}: {exc}"))
            if member.name not in predicted_failed:
                member.failures += 1
                member.streak += 1
            if member.streak >= self.reset_after:
                member.reset("failures")
        handled = len(raised) < sum(1 for m in self.members if m.awake)
        if not handled:
            self.unhandled += 1
        return Step(prediction, tuple(failed), handled)

    def _sample_weight(self, step_index: int) -> float:
        if self.boost_start < 0:
            return 1.0
        age = step_index - self.boost_start
        if age >= self._boost_horizon:  # the boost has faded out
            self.boost_start = -1
            return 1.0
        return 1.0 + (self.boost - 1.0) * math.exp(-age / self.boost_decay)

    # --- drift ------------------------------------------------------------------------------

    def _on_drift(self, member: Member, step_index: int) -> None:
        member.drifts += 1
        member.last_drift_time = time.time()
        if self.response == "reset":
            member.reset("drift")
        elif self.response == "reweight":
            self.boost_start = step_index
            assert member.detector is not None
            self._restart_accuracies(member.detector.recent)
        if member is self.members[self.lead]:
            self._wake_all()  # the served model's concept changed: the race starts again

    def _restart_accuracies(self, events: int) -> None:
        """Every member's faded accuracy from its outcomes over its last `events` tests only
        (those since the change, as the detector sees it); the vote's from nothing."""
        fading = self.fading
        for member in self.members:
            if not member.awake:
                continue
            num = den = 0.0
            for ok in member.score.last_outcomes(events):
                num = fading * num + ok
                den = fading * den + 1.0
            member.num, member.den = num, den
        self.vote_num = self.vote_den = 0.0

    # --- weighting --------------------------------------------------------------------------

    def _serve(self, preds: list[Hashable | None], votes: dict[Hashable, float]
               ) -> tuple[Hashable | None, Hashable | None, str]:
        """(served, voted, model): the weighted vote (`votes`: label -> the weights of the
        members that predict it), or the leader's prediction while it does better."""
        if not votes:
            return None, None, ENSEMBLE
        voted = argmax(votes)
        if self.follow_lead:
            lead = preds[self.lead]
            if lead is not None:
                return lead, voted, self.members[self.lead].name
        return voted, voted, ENSEMBLE

    def _mix(self, probas: Iterable[Mapping[Hashable, float] | None]) -> dict[Hashable, float]:
        """The members' probabilities averaged with their weights."""
        mixed: dict[Hashable, float] = {}
        total = 0.0
        for member, proba in zip(self.members, probas, strict=True):
            if proba:
                w = member.weight
                total += w
                for c, p in proba.items():
                    mixed[c] = mixed.get(c, 0.0) + w * p
        return {c: p / total for c, p in mixed.items()} if total else {}

    def _reweight(self) -> list[float]:
        """The members' weights, the leader, whether to follow it; returns the members' faded
        accuracies (-1 for a sleeping one)."""
        members = self.members
        accs = [(m.num + 1.0) / (m.den + 2.0) if m.awake else -1.0 for m in members]
        best = max(accs)
        self.lead = accs.index(best)
        self.follow_lead = (self.vote_num + 1.0) / (self.vote_den + 2.0) < best
        sharpness = self.sharpness
        exp = math.exp
        for member, acc in zip(members, accs, strict=True):
            member.weight = exp(sharpness * (acc - best)) if acc >= 0.0 else 0.0
        return accs

    # --- sleeping members -------------------------------------------------------------------

    def _doze(self, step_index: int, accs: list[float]) -> None:
        """Put to sleep the members far behind the leader for long; wake them all now and then.
        `accs`: the members' faded accuracies, as `_reweight` computed them."""
        if step_index and step_index % self.wake_every == 0:
            self._wake_all()
            return
        margin = self.sleep_margin
        assert margin is not None
        lead = self.lead
        floor = accs[lead] - margin
        for i, member in enumerate(self.members):
            if not member.awake or i == lead:
                continue
            if accs[i] < floor:
                member.behind += 1
                if member.behind >= self.sleep_after:
                    member.awake = False
                    member.weight = 0.0
                    member.sleeps += 1
                    # It wakes as a fresh copy: its model now would only hold memory (a grown
                    # tree: megabytes) and fill every checkpoint.
                    member.reset(None)
            elif member.behind:
                member.behind = 0

    def _wake_all(self) -> None:
        for member in self.members:
            if not member.awake:
                member.awake = True
                member.reset(None)
                if member.detector is not None:
                    member.detector = member.detector.clone()

    def weights(self) -> list[float]:
        """The members' normalised effective weights in the served prediction."""
        if self.follow_lead and len(self.members) > 1:
            return [1.0 if i == self.lead else 0.0 for i in range(len(self.members))]
        total = sum(m.weight for m in self.members if m.awake) or 1.0
        return [m.weight / total if m.awake else 0.0 for m in self.members]

    # --- reporting --------------------------------------------------------------------------

    def stats(self) -> dict[str, ModelStats]:
        """Stats of every member and of the ensemble (under `ENSEMBLE`)."""
        out = {
            m.name: ModelStats(
                accuracy=m.score.accuracy,
                rolling_accuracy=m.score.rolling_accuracy,
                tested=m.score.tested,
                learned=m.learned,
                drifts=m.drifts,
                weight=weight,
                last_drift_time=m.last_drift_time,
                failed=m.streak > 0,
                failures=m.failures,
                resets=dict(m.resets),
                f1=m.score.f1,
                rolling_f1=m.score.rolling_f1,
                recall=dict(m.score.recall),
                rolling_recall=dict(m.score.rolling_recall),
                active=m.awake,
            )
            for m, weight in zip(self.members, self.weights(), strict=True)
        }
        drift_times = [m.last_drift_time for m in self.members if m.last_drift_time is not None]
        resets: dict[str, int] = {}
        for m in self.members:
            for reason, n in m.resets.items():
                resets[reason] = resets.get(reason, 0) + n
        out[ENSEMBLE] = ModelStats(
            accuracy=self.score.accuracy,
            rolling_accuracy=self.score.rolling_accuracy,
            tested=self.score.tested,
            learned=self.labelled - self.unhandled,
            drifts=sum(m.drifts for m in self.members),
            weight=1.0,
            last_drift_time=max(drift_times) if drift_times else None,
            failures=self.unhandled,
            resets=resets,
            f1=self.score.f1,
            rolling_f1=self.score.rolling_f1,
            recall=dict(self.score.recall),
            rolling_recall=dict(self.score.rolling_recall),
        )
        return out

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]
