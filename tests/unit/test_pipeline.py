"""The prequential core against River's own evaluation, drift handling and the ensemble."""

import functools
import math
import random

import pytest
from river import evaluate as river_evaluate
from river import linear_model, metrics, naive_bayes, preprocessing, tree

from driftline.config import DriftSettings, ModelSpec, Settings
from driftline.datasets import bundled, synthetic
from driftline.errors import ConfigError
from pipeline import build_pipeline
from pipeline.core import Member, Pipeline
from pipeline.evaluate import evaluate
from pipeline.models import accepts_weight, build_model


def one_model(model, detector="none", response="none", name="m"):
    return Settings(
        models=(ModelSpec(name, model),),
        drift=DriftSettings(detector=detector, response=response),
    )


# --- the acceptance property: same numbers as River ------------------------------------------

RIVER = {
    "logistic_regression": lambda: (
        preprocessing.StandardScaler() | linear_model.LogisticRegression()
    ),
    "gaussian_nb": naive_bayes.GaussianNB,
    "hoeffding_tree": tree.HoeffdingTreeClassifier,
}


@pytest.mark.parametrize("preset", sorted(RIVER))
def test_accuracy_equals_rivers_progressive_val_score(preset):
    n = 5000
    report = evaluate(build_pipeline(one_model(preset)), bundled("elec", limit=n))
    expected = river_evaluate.progressive_val_score(
        list(bundled("elec", limit=n)), RIVER[preset](), metrics.Accuracy()
    ).get()
    assert report["events"] == n
    assert abs(report["models"]["m"]["accuracy"] - expected) <= 1e-9
    assert abs(report["models"]["ensemble"]["accuracy"] - expected) <= 1e-9
    assert report["models"]["m"]["drifts"] == 0


def test_members_that_cannot_predict_yet_are_not_tested():
    pipeline = build_pipeline(one_model("gaussian_nb"))
    rows = list(bundled("elec", limit=20))
    for x, y in rows:
        pipeline.process(x, y)
    stats = pipeline.snapshot()["m"]
    assert stats.learned == 20
    assert stats.tested == 19  # no prediction before the first sample


# --- unlabelled events --------------------------------------------------------------------


def test_unlabelled_events_are_predicted_not_learned():
    pipeline = build_pipeline(Settings())  # three members, adwin, reweight
    rows = list(bundled("elec", limit=300))
    for x, y in rows[:200]:
        pipeline.process(x, y)
    before = pipeline.snapshot()
    probe = rows[250][0]
    lr = pipeline.members[0].model
    proba = lr.predict_proba_one(probe)
    predictions = [pipeline.process(x) for x, _ in rows[200:]]
    assert all(p in (0, 1) for p in predictions)
    assert predictions == [pipeline.predict(x) for x, _ in rows[200:]]
    assert pipeline.snapshot() == before
    assert pipeline.unlabelled == 100
    assert pipeline.labelled == 200
    assert lr.predict_proba_one(probe) == proba


# --- models -------------------------------------------------------------------------------


def test_custom_factory_loads():
    pipeline = build_pipeline(one_model("tests.unit.factories:make_model"))
    assert isinstance(pipeline.members[0].model, naive_bayes.GaussianNB)
    evaluate(pipeline, bundled("elec", limit=50))
    assert pipeline.snapshot()["m"].learned == 50


def test_each_build_is_a_fresh_model():
    assert build_model("gaussian_nb", "k") is not build_model("gaussian_nb", "k")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "k: unknown preset 'nope'"),
        ("no_such_module:make", "k: cannot load factory"),
        ("tests.unit.factories:missing", "k: cannot load factory"),
        ("tests.unit.factories:make_not_a_model", "not a River classifier"),
        ("tests.unit.factories:make_raising", "boom"),
    ],
)
def test_bad_model_spec(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec, "k")


def test_the_fast_tree_predicts_as_rivers_tree():
    """`hoeffding_tree_fast` is River's tree with those parameters; only predict_one is ours."""
    ours = build_model("hoeffding_tree_fast", "k")
    river_tree = tree.HoeffdingTreeClassifier(grace_period=100, delta=1e-3, leaf_prediction="mc")
    rng = random.Random(2)
    assert ours.predict_one({"a": 1.0}) is river_tree.predict_one({"a": 1.0}) is None
    for i, (x, y) in enumerate(synthetic("agrawal", 6000, seed=3)):
        if i % 3 == 0:  # missing features take the most travelled branch
            x = {k: v for k, v in x.items() if rng.random() < 0.7}
        assert ours.predict_one(x) == river_tree.predict_one(x)
        w = rng.choice([1.0, 1.5, 2.0])
        ours.learn_one(x, y, w=w)
        river_tree.learn_one(x, y, w=w)
    assert ours.height > 2  # the comparison went through real splits
    assert ours.clone().grace_period == 100


def test_accepts_weight():
    assert accepts_weight(tree.HoeffdingTreeClassifier())
    assert accepts_weight(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    assert not accepts_weight(naive_bayes.GaussianNB())
    assert not accepts_weight(build_model("passive_aggressive", "k"))  # learns repeatedly
    assert accepts_weight(build_model("hoeffding_tree_fast", "k"))


# --- drift --------------------------------------------------------------------------------

CHANGE = 2000


def flipping_stream(n=3000, seed=7):
    """y = [a > 0.5], inverted from event CHANGE on: an abrupt, total concept change."""
    rng = random.Random(seed)
    for i in range(n):
        x = {"a": rng.random(), "b": rng.random()}
        y = int(x["a"] > 0.5)
        yield x, (y if i < CHANGE else 1 - y)


@functools.cache
def run_drift(response):
    """(pipeline, its member, the member's model at the change, drift indices, hits)."""
    pipeline = build_pipeline(one_model("gaussian_nb", detector="adwin", response=response))
    member = pipeline.members[0]
    drifts_at, hits, model_before = [], [], None
    for i, (x, y) in enumerate(flipping_stream()):
        if i == CHANGE:
            model_before = member.model
        drifts = member.drifts
        hits.append(pipeline.process(x, y) == y)
        if member.drifts > drifts:
            drifts_at.append(i)
    return pipeline, member, model_before, drifts_at, hits


@pytest.mark.parametrize("response", ["reset", "none", "reweight"])
def test_abrupt_change_is_detected(response):
    pipeline, _, _, drifts_at, _ = run_drift(response)
    assert drifts_at, "no drift detected"
    assert CHANGE <= drifts_at[0] < CHANGE + 300
    stats = pipeline.snapshot()
    assert stats["m"].drifts == len(drifts_at)
    assert stats["ensemble"].drifts == len(drifts_at)
    assert stats["m"].last_drift_time is not None


def test_reset_replaces_the_model():
    _, member, before, _, _ = run_drift("reset")
    assert member.model is not before
    assert type(member.model) is type(before)
    # the fresh model learned the new concept only
    assert member.score.rolling_accuracy is not None
    x = {"a": 0.9, "b": 0.5}
    assert member.model.predict_one(x) == 0


def test_none_keeps_the_model():
    _, member, before, _, _ = run_drift("none")
    assert member.model is before


def test_reset_recovers_faster_than_none():
    def late_accuracy(response):
        hits = run_drift(response)[4]
        return sum(hits[-500:]) / 500

    assert late_accuracy("reset") > 0.95
    assert late_accuracy("none") < 0.5


# --- the ensemble -------------------------------------------------------------------------


def concept(x):
    return x["a"] > 0.5


class AlwaysRight:
    def predict_one(self, x):
        return concept(x)

    def learn_one(self, x, y):
        pass


class AlwaysWrong:
    def predict_one(self, x):
        return not concept(x)

    def learn_one(self, x, y):
        pass


def run_ensemble(n, fading=0.995, sharpness=10.0, members=None):
    members = members or [
        Member("bad", AlwaysWrong(), None, 1000), Member("good", AlwaysRight(), None, 1000)
    ]
    pipeline = Pipeline(members, fading=fading, sharpness=sharpness)
    rng = random.Random(3)
    for _ in range(n):
        x = {"a": rng.random()}
        pipeline.process(x, concept(x))
    return pipeline


def test_ensemble_follows_the_good_member():
    stats = run_ensemble(300).snapshot()
    assert stats["good"].accuracy == 1.0
    assert stats["bad"].accuracy == 0.0
    assert stats["ensemble"].accuracy >= stats["good"].accuracy - 0.01
    assert stats["good"].weight > 0.9
    assert math.isclose(stats["good"].weight + stats["bad"].weight, 1.0)
    assert stats["ensemble"].weight == 1.0


@pytest.mark.parametrize("n", [1, 5, 50])
def test_ensemble_weights_follow_the_documented_formula(n):
    fading, sharpness = 0.9, 2.0
    pipeline = run_ensemble(n, fading, sharpness)
    bad, good = pipeline.members
    s = sum(fading**k for k in range(n))  # faded count of (correct) predictions
    a_good, a_bad = (s + 1) / (s + 2), 1 / (s + 2)
    w_bad = math.exp(sharpness * (a_bad - a_good))
    assert math.isclose(good.weight, 1.0, rel_tol=1e-12)  # the leader's
    assert math.isclose(bad.weight, w_bad, rel_tol=1e-12)
    # The first vote was a tie (both weights 1), won by the first label counted: the bad one.
    # The vote has been less accurate than the leader since, so the leader's prediction is
    # served, and the exported weights are the effective ones.
    a_vote = (s - fading ** (n - 1) + 1) / (s + 2)
    assert a_vote < a_good
    assert pipeline.follow_lead
    stats = pipeline.snapshot()
    assert (stats["good"].weight, stats["bad"].weight) == (1.0, 0.0)
    assert pipeline.predict({"a": 0.9}) is True


class WrongOnAThird:
    """Right except on its own third of [0, 1)."""

    def __init__(self, k):
        self.k = k

    def predict_one(self, x):
        right = concept(x)
        return (not right) if int(x["a"] * 3) == self.k else right

    def learn_one(self, x, y):
        pass


def test_the_vote_is_served_while_it_beats_the_leader():
    members = [Member(f"m{k}", WrongOnAThird(k), None, 1000) for k in range(3)]
    pipeline = run_ensemble(600, members=members)
    stats = pipeline.snapshot()
    # two of three are right on every event: the vote beats every member by far
    assert max(stats[f"m{k}"].accuracy for k in range(3)) < 0.75
    assert stats["ensemble"].accuracy > 0.9
    assert not pipeline.follow_lead
    weights = [stats[f"m{k}"].weight for k in range(3)]
    total = sum(m.weight for m in members)
    assert weights == [m.weight / total for m in members]
    assert math.isclose(sum(weights), 1.0)


def test_ensemble_learned_counts_labelled_events():
    pipeline = build_pipeline(Settings())
    rows = list(bundled("elec", limit=120))
    for i, (x, y) in enumerate(rows):
        pipeline.process(x, None if i % 4 == 0 else y)
    stats = pipeline.snapshot()
    assert stats["ensemble"].learned == 90
    assert all(stats[s.name].learned == 90 for s in Settings().models)
    assert stats["ensemble"].tested <= 90
    assert pipeline.unlabelled == 30
    assert math.isclose(sum(stats[s.name].weight for s in Settings().models), 1.0)


def test_pipeline_needs_a_member():
    with pytest.raises(ValueError):
        Pipeline([])


class RaisesAfter:
    """Right until its `n`-th prediction, then raises (a model with a bug)."""

    def __init__(self, n):
        self.n = n

    def predict_one(self, x):
        self.n -= 1
        if self.n < 0:
            raise ValueError("bug")
        return concept(x)

    def learn_one(self, x, y):
        pass


def test_a_member_that_raises_leaves_the_vote_and_the_leader_is_still_right():
    members = [Member("buggy", RaisesAfter(100), None, 1000),
               Member("bad", AlwaysWrong(), None, 1000), Member("good", AlwaysRight(), None, 1000)]
    pipeline = run_ensemble(300, members=members)
    stats = pipeline.snapshot()
    assert stats["buggy"].failed and stats["buggy"].weight == 0.0
    assert [m.name for m in pipeline.members] == ["bad", "good"]
    assert pipeline.members[pipeline.lead].name == "good"
    assert stats["ensemble"].accuracy > 0.95
    assert math.isclose(stats["good"].weight + stats["bad"].weight, 1.0)
    assert pipeline.predict({"a": 0.9}) is True
