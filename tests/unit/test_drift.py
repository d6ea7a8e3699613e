"""Drift detection and responses: pinned detection points of every detector, rises against
falls, the drift state across a pickle round trip (checkpoints pickle the whole pipeline), and
what `reweight` does to sample weights and ensemble weights."""

import collections
import dataclasses
import math
import pickle
import random

import pytest

from driftline.config import DriftSettings, Settings
from driftline.datasets import drift_points, synthetic
from driftline.learning import build_learner
from pipeline.drift import DETECTORS, RiseDetector, make_detector
from pipeline.ensemble import DriftEnsemble

CHANGE = 2000


def error_stream(before, after, n=4000, seed=1):
    """0/1 errors at rate `before`, then `after` from CHANGE on."""
    rng = random.Random(seed)
    return [int(rng.random() < (before if i < CHANGE else after)) for i in range(n)]


# Indices at which each detector (as driftline builds it, River's defaults otherwise) fires on
# error_stream(0.1, 0.5). Computed once; a change here is a change of River's detectors or of
# how driftline configures them.
RISE = {
    "adwin": [2047],
    "page_hinkley": [2086],
    "kswin": [2038],
    "ddm": [2034],
    # EDDM keeps firing while the error rate stays high: it restarts after each detection and
    # then finds the new errors close together again.
    "eddm": [
        2005, 2054, 2137, 2265, 2340, 2418, 2516, 2565, 2663, 2766, 2827, 2910,
        2976, 3112, 3171, 3242, 3306, 3367, 3472, 3530, 3595, 3663, 3732, 3797,
    ],
    "hddm_a": [2086],
    "hddm_w": [2027],
}


def test_every_detector_is_pinned():
    assert sorted(RISE) == sorted(DETECTORS)


@pytest.mark.parametrize("name", sorted(RISE))
def test_detection_points(name):
    detector = make_detector(name, {})
    fired = []
    for i, error in enumerate(error_stream(0.1, 0.5)):
        detector.update(error)
        if detector.drift_detected:
            fired.append(i)
    assert fired == RISE[name]
    assert fired[0] >= CHANGE  # the pin means something: nothing fires before the change


def test_none_is_no_detector():
    assert make_detector("none", {}) is None


class Scripted:
    """A 'model' that is wrong exactly where the script says (x carries the event's index)."""

    def __init__(self, errors):
        self.errors = errors

    def predict_one(self, x):
        return 0 if self.errors[x["i"]] else 1

    def learn_one(self, x, y):
        pass


def counted_drifts(name, errors, params=None):
    """Indices where the pipeline counts a drift of a member erring as `errors` says."""
    learner = DriftEnsemble(
        {"m": Scripted(errors)}, make_detector(name, params or {}), response="none", window=100
    )
    member = learner.members[0]
    counted = []
    for i in range(len(errors)):
        learner.step({"i": i}, 1)
        if member.drifts > len(counted):
            counted.append(i)
    return counted


def test_the_rise_detector_has_rivers_shape():
    detector = RiseDetector(make_detector("adwin", {}))
    fired = [i for i, e in enumerate(error_stream(0.1, 0.5)) if detector.update(e).drift_detected]
    assert fired == RISE["adwin"]
    assert detector.recent > 0


@pytest.mark.parametrize("name", sorted(RISE))
def test_a_rise_counts(name):
    assert counted_drifts(name, error_stream(0.1, 0.5)) == RISE[name]


# On error_stream(0.5, 0.1), a learner getting better: what each detector fires at, and what the
# pipeline counts as drifts (only rises of the error rate).
FALL = {
    "adwin": ([2079], []),
    "kswin": ([937, 2029], [937]),
    "page_hinkley": ([], []),
    "ddm": ([], []),
    "hddm_a": ([], []),
}


@pytest.mark.parametrize("name", sorted(FALL))
def test_a_fall_is_no_drift(name):
    errors = error_stream(0.5, 0.1)
    detector = make_detector(name, {})
    fired = []
    for i, error in enumerate(errors):
        detector.update(error)
        if detector.drift_detected:
            fired.append(i)
    raw, counted = FALL[name]
    assert fired == raw
    assert counted_drifts(name, errors) == counted


def test_page_hinkley_both_ways_on_request():
    errors = error_stream(0.5, 0.1)
    assert counted_drifts("page_hinkley", errors, {"mode": "both"}) != []


# --- the drift state survives a pickle round trip ------------------------------------------


def sea(n):
    return list(synthetic("sea", n, seed=5))


@pytest.mark.parametrize("response", ["none", "reset", "reweight"])
def test_drift_state_survives_pickling(response):
    n, cut = 8000, 5000  # SEA: drifts at 2000, 4000, 6000; detected before and after the cut
    assert drift_points("sea", n) == [2000, 4000, 6000]
    rows = sea(n)
    settings = Settings(drift=dataclasses.replace(DriftSettings(), response=response))
    learner = build_learner(settings)
    for x, y in rows[:cut]:
        learner.step(x, y)
    before = learner.stats()
    assert before["ensemble"].drifts >= 1
    copy = pickle.loads(pickle.dumps(learner))
    assert copy.stats() == before  # drift times included
    for x, y in rows[cut:]:
        assert copy.step(x, y).prediction == learner.step(x, y).prediction
    after, copied = learner.stats(), copy.stats()
    assert after["ensemble"].drifts > before["ensemble"].drifts  # drifts after the copy too
    for name, stats in after.items():
        # a drift after the copy is stamped with the wall clock, a moment apart in the two runs
        same = dataclasses.replace(copied[name], last_drift_time=stats.last_drift_time)
        assert same == stats, name
        assert (copied[name].last_drift_time is None) == (stats.last_drift_time is None)


# --- the responses ------------------------------------------------------------------------


class Recorder:
    """Right until `flip`, wrong after it (x carries the index); records what it learns."""

    def __init__(self, flip, takes_weight):
        self.flip = flip
        self.takes_weight = takes_weight
        self.learned = []  # (index, weight)
        if takes_weight:
            self.learn_one = self._learn_weighted

    def clone(self):
        return Recorder(self.flip, self.takes_weight)

    def predict_one(self, x):
        return 1 if x["i"] < self.flip else 0

    def learn_one(self, x, y):
        self.learned.append((x["i"], None))

    def _learn_weighted(self, x, y, w=1.0):
        self.learned.append((x["i"], w))


def reweighted(response, n=1600, flip=1000):
    """A member that starts failing at `flip` (ADWIN sees it), a weighted and an unweighted
    bystander that stay right; the pipeline and the index of the drift."""
    models = {
        "drifting": Recorder(flip, True),
        "weighted": Recorder(n, True),
        "plain": Recorder(n, False),
    }
    learner = DriftEnsemble(models, make_detector("adwin", {}), response=response, boost=3.0,
                            boost_decay=100.0)
    drifting = learner.members[0]
    at = None
    for i in range(n):
        learner.step({"i": i}, 1)
        if at is None and drifting.drifts:
            at = i
    return learner, at


def recorders(learner):
    """The Recorder inside each member (wrapped, since it only predicts labels)."""
    return [m.model.model for m in learner.members]


def test_reweight_boosts_every_member_with_the_documented_weight():
    pipeline, at = reweighted("reweight")
    assert at is not None and at >= 1000
    drifting, weighted, plain = recorders(pipeline)
    for model in (drifting, weighted):
        weights = dict(model.learned)
        for t in (0, 1, 50, 200):  # t = 0: the event the drift was detected on
            assert weights[at + t] == pytest.approx(1 + 2 * math.exp(-t / 100))
        assert weights[at - 1] == 1.0
    # no `w`: the raised weight becomes round(w) lessons of the same sample
    lessons = collections.Counter(i for i, _ in plain.learned)
    for t in (0, 1, 50, 200):
        assert lessons[at + t] == round(1 + 2 * math.exp(-t / 100))
    assert lessons[at - 1] == 1
    assert all(m.learned == 1600 for m in pipeline.members)


def test_reweight_recomputes_the_weights_from_the_change_on():
    _, at = reweighted("reweight")
    # stop right after the detection: with `none` the faded accuracy (about 200 events) still
    # remembers the drifting member's good past; `reweight` restarted it from ADWIN's window,
    # which holds mostly the failures since the change
    kept, _ = reweighted("none", n=at + 1)
    restarted, _ = reweighted("reweight", n=at + 1)
    assert kept.members[0].weight > 0.2
    assert restarted.members[0].weight < kept.members[0].weight / 10
    assert restarted.follow_lead  # the vote's accuracy restarted from nothing: the leader serves


@pytest.mark.parametrize("response", ["none", "reset"])
def test_other_responses_do_not_boost(response):
    pipeline, at = reweighted(response)
    assert at is not None
    assert pipeline.boost_start == -1
    assert all(w in (None, 1.0) for r in recorders(pipeline) for _, w in r.learned)
