"""The learning core against River's own evaluation, the ensemble, and any classification stream."""

import inspect
import math
import os
import random

import pytest
from river import (
    datasets,
    forest,
    linear_model,
    metrics,
    multiclass,
    naive_bayes,
    optim,
    preprocessing,
    tree,
)
from river import evaluate as river_evaluate

from driftline.config import DriftSettings, LearningSettings, ModelSpec, Settings
from driftline.datasets import bundled
from driftline.errors import ConfigError
from driftline.learning import build_learner
from pipeline.ensemble import DriftEnsemble, LimitExceeded, argmax
from pipeline.evaluate import evaluate
from pipeline.onevsrest import OneVsRest, mirrored
from pipeline.presets import PRESETS, FactoryError, accepts_weight, build_model
from pipeline.stacked import StackedOneVsRest


def one_model(model, detector="none", response="none", name="m", **learning):
    return Settings(
        models=(ModelSpec(name, model),),
        drift=DriftSettings(detector=detector, response=response),
        learning=LearningSettings(**learning),
    )


# --- the acceptance property: same numbers as River ------------------------------------------

# Each preset written out with River's own parts: on numbers alone `TypedScaler` is River's
# StandardScaler, `TreeStrings` changes nothing, and `OneVsRest` is River's binary model on a
# binary stream (tested below) and River's `OneVsRestClassifier` from the third class on.
RIVER = {
    "logistic_regression": lambda: (
        preprocessing.StandardScaler() | OneVsRest(linear_model.LogisticRegression())
    ),
    "passive_aggressive": lambda: (
        preprocessing.StandardScaler() | OneVsRest(linear_model.PAClassifier())
    ),
    "gaussian_nb": naive_bayes.GaussianNB,
    "hoeffding_tree": tree.HoeffdingTreeClassifier,
}


@pytest.mark.parametrize("preset", sorted(RIVER))
def test_accuracy_equals_rivers_progressive_val_score(preset):
    n = 5000
    report = evaluate(build_learner(one_model(preset)), bundled("elec", limit=n))
    expected = river_evaluate.progressive_val_score(
        list(bundled("elec", limit=n)), RIVER[preset](), metrics.Accuracy()
    ).get()
    assert report["events"] == n
    assert abs(report["models"]["m"]["accuracy"] - expected) <= 1e-9
    assert abs(report["models"]["ensemble"]["accuracy"] - expected) <= 1e-9
    assert report["models"]["m"]["drifts"] == 0


def multiclass_rows(n=3000, seed=1):
    """A 4-class stream with string labels, a categorical feature and missing values."""
    rng = random.Random(seed)
    for _ in range(n):
        a, b = rng.random(), rng.random()
        shade = rng.choice(["light", "dark"])
        label = ("north" if a > 0.5 else "south") + ("-" + shade)
        x = {"a": a, "b": b, "shade": shade, "flag": rng.random() < 0.5}
        if rng.random() < 0.2:
            del x["a" if rng.random() < 0.5 else "b"]
        yield x, label


def test_f1_and_recall_equal_rivers():
    rows = list(multiclass_rows(2000))
    report = evaluate(build_learner(one_model("hoeffding_tree")), rows)
    f1 = river_evaluate.progressive_val_score(
        rows, tree.HoeffdingTreeClassifier(), metrics.MacroF1()
    ).get()
    assert abs(report["models"]["m"]["f1"] - f1) <= 1e-9
    # Per-class recall from River's confusion matrix of the same run (River's `Recall` is binary).
    cm = river_evaluate.progressive_val_score(
        rows, tree.HoeffdingTreeClassifier(), metrics.ConfusionMatrix()
    )
    assert set(report["models"]["m"]["recall"]) == set(cm.sum_row)
    for label, n in cm.sum_row.items():
        assert abs(report["models"]["m"]["recall"][label] - cm[label][label] / n) <= 1e-9


@pytest.mark.parametrize("delay", [1, 50])
def test_delayed_labels_equal_rivers_delay(delay):
    rows = list(bundled("elec", limit=3000))
    report = evaluate(build_learner(one_model("logistic_regression")), rows, delay=delay)
    expected = river_evaluate.progressive_val_score(
        rows, RIVER["logistic_regression"](), metrics.Accuracy(), delay=delay
    ).get()
    assert abs(report["models"]["m"]["accuracy"] - expected) <= 1e-9
    assert report["models"]["m"]["learned"] == 3000


def test_the_ensemble_runs_in_rivers_own_evaluation():
    model = DriftEnsemble({"lr": linear_model.LogisticRegression(), "nb": naive_bayes.GaussianNB()})
    score = river_evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy())
    assert score.get() > 0.8
    assert model.stats()["ensemble"].tested == 1250


# --- any classification stream: every preset ------------------------------------------------


@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"no_change"}))
def test_every_preset_learns_a_multiclass_string_labelled_categorical_stream(preset):
    report = evaluate(build_learner(one_model(preset)), multiclass_rows())
    m = report["models"]["m"]
    assert m["failed"] == 0 and m["resets"] == 0
    # 4 classes: chance is 0.25. Gaussian naive Bayes cannot model a feature that is constant
    # within a class (the label's own shade), so its bar is lower.
    assert m["accuracy"] > (0.4 if preset == "gaussian_nb" else 0.6), m
    assert set(m["recall"]) == {"north-light", "north-dark", "south-light", "south-dark"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_feature_that_changes_type_breaks_no_preset(preset):
    learner = build_learner(one_model(preset))
    rows = list(multiclass_rows(400))
    for i, (x, y) in enumerate(rows):
        if i % 7 == 0:
            x = {**x, "a": "high", "shade": 3.5}  # a number as a string, a string as a number
        step = learner.step(x, y)
        assert not step.failed, (i, step.failed)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_labels_of_several_types_break_no_preset(preset):
    """A stream whose labels are integers and strings at once (a CSV column of "1", "2" and
    "x"): Python cannot sort them, which River's trees did to list their classes."""
    learner = build_learner(one_model(preset))
    labels = [1, 2, "x", "y"]
    for i, (x, _) in enumerate(multiclass_rows(400)):
        step = learner.step(x, labels[i % 4])
        assert not step.failed, (i, step.failed)
    assert learner.stats()["m"].tested > 300


def test_the_report_keeps_classes_of_the_same_text_apart():
    learner = build_learner(one_model("logistic_regression"))
    for i in range(200):
        learner.step({"a": float(i % 2)}, 1 if i % 2 else "1")
    recall = evaluate(learner, [])["models"]["m"]["recall"]
    assert set(recall) == {"1", "1 (int)"}


def test_booleans_and_integer_labels_stay_what_they_are():
    learner = build_learner(Settings())
    for i in range(300):
        learner.step({"a": float(i % 2)}, i % 2 == 1)
    assert learner.predict({"a": 1.0}).label is True
    assert learner.classes == {True, False}


# --- members that fail ------------------------------------------------------------------------


def concept(x):
    return x["a"] > 0.5


class AlwaysRight:
    def predict_one(self, x):
        return concept(x)

    def learn_one(self, x, y):
        pass


class AlwaysWrong(AlwaysRight):
    def predict_one(self, x):
        return not concept(x)


class Flaky(AlwaysRight):
    """Raises on events whose "a" is above `above`."""

    def __init__(self, above=0.9):
        self.above = above

    def predict_one(self, x):
        if x["a"] > self.above:
            raise ValueError("bug")
        return concept(x)


class Broken(AlwaysRight):
    def predict_one(self, x):
        raise ValueError("bug")

    def learn_one(self, x, y):
        raise ValueError("bug")


class Poisoned(AlwaysRight):
    """Probabilities that turn NaN once it has learned `after` samples."""

    def __init__(self, after=50):
        self.after = after
        self.seen = 0

    def predict_proba_one(self, x):
        if self.seen >= self.after:
            return {True: math.nan, False: math.nan}
        return {concept(x): 1.0}

    def learn_one(self, x, y):
        self.seen += 1


def run(models, n, **kwargs):
    learner = DriftEnsemble(models, **kwargs)
    rng = random.Random(3)
    steps = []
    for _ in range(n):
        x = {"a": rng.random()}
        steps.append(learner.step(x, concept(x)))
    return learner, steps


def test_a_member_that_raises_on_some_events_is_not_set_aside():
    learner, steps = run({"flaky": Flaky(), "good": AlwaysRight()}, 500)
    stats = learner.stats()
    raised = [s for s in steps if s.failed]
    assert raised and all(s.handled for s in steps)  # the other member handled them
    assert stats["flaky"].failures == len(raised)
    assert stats["flaky"].learned == 500  # it still learns every event
    assert stats["flaky"].resets == {}  # never 10 in a row
    assert stats["flaky"].tested == 500 - len(raised)


def test_a_member_that_keeps_failing_is_replaced_after_a_run():
    learner, steps = run({"broken": Broken(), "good": AlwaysRight()}, 95, reset_after=10)
    assert learner.stats()["broken"].resets == {"failures": 9}
    assert learner.stats()["broken"].failures == 95
    assert all(s.handled for s in steps)


def test_an_event_no_member_can_handle_is_not_handled():
    learner, steps = run({"broken": Broken()}, 5)
    assert not any(s.handled for s in steps)
    assert learner.stats()["ensemble"].failures == 5


def test_a_member_with_non_finite_state_is_reset():
    learner, _ = run({"poisoned": Poisoned(after=50), "good": AlwaysRight()}, 200)
    stats = learner.stats()
    assert stats["poisoned"].resets["non_finite"] >= 2
    assert stats["ensemble"].accuracy > 0.95


def test_limits_reject_before_any_model_learns():
    learner = DriftEnsemble({"nb": naive_bayes.GaussianNB()}, max_classes=3, max_feature_names=4)
    for label in "abc":
        learner.step({"a": 1.0}, label)
    with pytest.raises(LimitExceeded) as info:
        learner.step({"a": 1.0}, "d")
    assert info.value.reason == "too_many_classes"
    with pytest.raises(LimitExceeded) as info:
        learner.step({f"f{i}": 1.0 for i in range(5)}, "a")
    assert info.value.reason == "too_many_feature_names"
    assert learner.labelled == 3
    learner.step({"a": 2.0, "b": 1.0}, "a")  # known classes and room for names: fine


# --- the ensemble -------------------------------------------------------------------------


def test_ensemble_follows_the_good_member():
    learner, _ = run({"bad": AlwaysWrong(), "good": AlwaysRight()}, 300)
    stats = learner.stats()
    assert stats["good"].accuracy == 1.0
    assert stats["bad"].accuracy == 0.0
    assert stats["ensemble"].accuracy >= stats["good"].accuracy - 0.01
    assert math.isclose(stats["good"].weight + stats["bad"].weight, 1.0)
    assert stats["ensemble"].weight == 1.0
    assert learner.predict({"a": 0.9}).model == "good"


@pytest.mark.parametrize("n", [1, 5, 50])
def test_ensemble_weights_follow_the_documented_formula(n):
    fading, sharpness = 0.9, 2.0
    learner, _ = run({"bad": AlwaysWrong(), "good": AlwaysRight()}, n, fading=fading,
                     sharpness=sharpness)
    bad, good = learner.members
    s = sum(fading**k for k in range(n))  # faded count of (correct) predictions
    a_good, a_bad = (s + 1) / (s + 2), 1 / (s + 2)
    assert math.isclose(good.weight, 1.0, rel_tol=1e-12)  # the leader's
    assert math.isclose(bad.weight, math.exp(sharpness * (a_bad - a_good)), rel_tol=1e-12)
    # The first vote was a tie (both weights 1), won by the first label counted: the bad one.
    # The vote has been less accurate than the leader since, so the leader is followed.
    assert learner.follow_lead
    stats = learner.stats()
    assert (stats["good"].weight, stats["bad"].weight) == (1.0, 0.0)
    assert learner.predict({"a": 0.9}).label is True


class WrongOnAThird(AlwaysRight):
    """Right except on its own third of [0, 1)."""

    def __init__(self, k):
        self.k = k

    def predict_one(self, x):
        right = concept(x)
        return (not right) if int(x["a"] * 3) == self.k else right


def test_the_vote_is_served_while_it_beats_the_leader():
    learner, _ = run({f"m{k}": WrongOnAThird(k) for k in range(3)}, 600)
    stats = learner.stats()
    assert max(stats[f"m{k}"].accuracy for k in range(3)) < 0.75
    assert stats["ensemble"].accuracy > 0.9
    assert not learner.follow_lead
    prediction = learner.predict({"a": 0.9})
    assert prediction.model == "ensemble"
    assert math.isclose(sum(prediction.proba.values()), 1.0)


def test_unlabelled_events_are_predicted_not_learned():
    learner = build_learner(Settings())
    rows = list(bundled("elec", limit=300))
    for x, y in rows[:200]:
        learner.step(x, y)
    before = learner.stats()
    steps = [learner.step(x) for x, _ in rows[200:]]
    assert all(s.prediction.label in (0, 1) for s in steps)
    assert learner.stats() == before
    assert (learner.unlabelled, learner.labelled) == (100, 200)


def test_an_ensemble_needs_a_member():
    with pytest.raises(ValueError):
        DriftEnsemble({})


# --- models -------------------------------------------------------------------------------


def test_custom_factory_loads():
    learner = build_learner(one_model("tests.unit.factories:make_model"))
    evaluate(learner, bundled("elec", limit=50))
    assert learner.stats()["m"].learned == 50


def test_each_build_is_a_fresh_model():
    assert build_model("gaussian_nb") is not build_model("gaussian_nb")


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("nope", LookupError, "unknown preset 'nope'"),
        ("no_such_module:make", FactoryError, "cannot load factory"),
        ("tests.unit.factories:missing", FactoryError, "cannot load factory"),
        ("tests.unit.factories:make_not_a_model", FactoryError, "not a River classifier"),
        ("tests.unit.factories:make_raising", FactoryError, "boom"),
    ],
)
def test_bad_model_spec(spec, error, message):
    with pytest.raises(error, match=message):
        build_model(spec)
    with pytest.raises(ConfigError, match=r"models\[0\]\.model: .*" + message):
        build_learner(one_model(spec))


def test_accepts_weight():
    assert accepts_weight(tree.HoeffdingTreeClassifier())
    assert accepts_weight(build_model("logistic_regression"))
    assert not accepts_weight(naive_bayes.GaussianNB())
    assert not accepts_weight(build_model("passive_aggressive"))  # learns repeatedly
    assert accepts_weight(build_model("hoeffding_tree_fast"))


# --- members that do not pay for themselves sleep -----------------------------------------------


class Counting(AlwaysRight):
    """Counts what it is asked to do; right or wrong as `right` says."""

    def __init__(self, right=True):
        self.right = right
        self.predicted = self.learned = 0

    def predict_one(self, x):
        self.predicted += 1
        return concept(x) if self.right else not concept(x)

    def learn_one(self, x, y):
        self.learned += 1


def test_a_member_far_behind_the_leader_sleeps_and_costs_nothing():
    learner, _ = run({"good": Counting(), "bad": Counting(right=False)}, 1000,
                     sleep_margin=0.05, sleep_after=100, wake_every=10**6)
    good, bad = learner.members
    assert not bad.awake and good.awake
    stats = learner.stats()
    assert stats["bad"].active is False and stats["bad"].weight == 0.0
    # asleep after ~100 events behind, its model replaced by a fresh copy that does no work:
    # the grown one would only hold memory until the member wakes (as a fresh copy)
    assert bad.model.model.learned == 0 and bad.sleeps == 1
    assert good.model.model.learned == 1000
    assert stats["ensemble"].accuracy > 0.95


def test_sleeping_members_wake_as_fresh_copies_on_schedule():
    learner, _ = run({"good": Counting(), "bad": Counting(right=False)}, 650,
                     sleep_margin=0.05, sleep_after=100, wake_every=300)
    bad = learner.members[1]
    # slept, woke as a fresh copy after events 300 and 600, and is awake at 650 (fewer than
    # 100 events behind since): the fresh copy learned events 602 to 650
    assert bad.awake and bad.sleeps == 2
    assert bad.model.model.learned == 49


def test_sleeping_is_off_when_the_margin_is_none():
    learner, _ = run({"good": Counting(), "bad": Counting(right=False)}, 500, sleep_after=10)
    assert all(m.awake for m in learner.members)


# --- one-vs-rest with one model on a binary stream --------------------------------------------


def test_a_binary_stream_costs_one_model_with_rivers_binary_predictions():
    rows = list(bundled("elec", limit=2000))
    ours = OneVsRest(linear_model.LogisticRegression())
    river = linear_model.LogisticRegression()
    first = rows[0][1]
    for x, y in rows:
        if ours.classes[1:]:
            p = ours.predict_proba_one(x)
            assert abs(p[first] - river.predict_proba_one(x)[True]) <= 1e-12
        ours.learn_one(x, y)
        river.learn_one(x, y == first)
    assert len(ours.models) == 1


LINEAR = {
    "lr": linear_model.LogisticRegression,
    "lr, its own rates and clip": lambda: linear_model.LogisticRegression(
        optimizer=optim.SGD(0.2), intercept_lr=0.3, clip_gradient=0.05),
    "pa": linear_model.PAClassifier,
    "pa mode 0": lambda: linear_model.PAClassifier(mode=0, learn_intercept=False),
    "pa mode 2": lambda: linear_model.PAClassifier(C=0.05, mode=2),
}


def numeric_multiclass(n=1500, seed=3, width=4):
    """Classes that come one after another, features missing now and then and new ones
    appearing, some values large enough for River's sigmoid and log-loss cut-offs."""
    rng = random.Random(seed)
    for i in range(n):
        classes = 2 + min(3, i // 300)
        y = rng.randrange(classes)
        x = {f"f{j}": rng.gauss(y * (j % 3 - 1), 1.0) for j in range(width + i // 500)}
        if rng.random() < 0.2:
            del x[rng.choice(list(x))]
        if rng.random() < 0.05:
            x["loud"] = rng.choice([-400.0, 600.0])
        yield x, "abcde"[y]


def assert_same_probabilities(p, q):
    assert p.keys() == q.keys()
    assert all(abs(p[c] - q[c]) <= 1e-9 for c in p), (p, q)


@pytest.mark.parametrize("make", sorted(LINEAR))
def test_the_stacked_one_vs_rest_gives_rivers_one_vs_rest_probabilities(make):
    ours, river = StackedOneVsRest(LINEAR[make]()), multiclass.OneVsRestClassifier(LINEAR[make]())
    weighted = "w" in inspect.signature(river.classifier.learn_one).parameters
    extreme = 0
    for i, (x, y) in enumerate(numeric_multiclass()):
        assert_same_probabilities(ours.predict_proba_one(x), river.predict_proba_one(x))
        extreme += bool(ours.classes) and float(abs(ours._raw(ours._vector(x, False))).max()) > 30
        w = {"w": 1.0 + i % 3} if weighted else {}
        ours.learn_one(x, y, **w)
        river.learn_one(x, y, **w)
    assert len(ours.classes) == 5  # every class came
    assert ours.pa or extreme > 10  # the logistic's cut-offs were used (a PA stays well inside)


@pytest.mark.parametrize("make", sorted(LINEAR))
def test_a_third_class_splits_the_binary_model_into_mirror_images(make):
    model, binary = OneVsRest(LINEAR[make]()), LINEAR[make]()
    rows = list(numeric_multiclass(width=12))  # more features than the matrix starts with
    for x, y in rows[:300]:  # two classes: the binary model alone, "a" its True
        model.learn_one(x, y)
        binary.learn_one(x, y == "a")
    assert len(model.models) == 1
    p = binary.predict_proba_one(rows[0][0])[True]
    assert abs(mirrored(binary).predict_proba_one(rows[0][0])[True] - (1.0 - p)) <= 1e-12
    river = multiclass.OneVsRestClassifier(LINEAR[make]())
    river.classifiers = {"a": binary, "b": mirrored(binary)}
    for x, y in rows[300:]:  # from the third class on: River's one-vs-rest from those two
        model.learn_one(x, y)
        river.learn_one(x, y)
        assert_same_probabilities(model.predict_proba_one(x), river.predict_proba_one(x))
    assert set(model.models) == set("abcde")


def test_a_one_vs_rest_of_another_model_is_rivers():
    model = OneVsRest(linear_model.LogisticRegression(l2=0.01))
    for x, y in numeric_multiclass(400):
        model.learn_one(x, y)
    assert isinstance(model.multi, multiclass.OneVsRestClassifier)


@pytest.mark.parametrize("preset", ["logistic_regression", "passive_aggressive"])
def test_the_one_member_step_equals_the_general_predict_then_learn(preset):
    settings = one_model(preset, detector="ddm", response="reweight")
    fast, general = build_learner(settings), build_learner(settings)
    for i, (x, y) in enumerate(bundled("elec", limit=6000)):
        y = 1 - y if (i // 1500) % 2 else y  # the concept flips, and back: drifts
        fast.step(x, y)
        general.learn(x, y, general.predict(x))
    a, b = fast.stats(), general.stats()
    assert a["m"].drifts > 0  # the drift response was exercised
    for name in ("m", "ensemble"):
        assert (a[name].accuracy, a[name].drifts, a[name].learned, a[name].f1) == (
            b[name].accuracy, b[name].drifts, b[name].learned, b[name].f1)


@pytest.mark.parametrize("delay", [0, 3])
@pytest.mark.parametrize("leaves", ["nba", "nb"])
@pytest.mark.parametrize("stream", ["led", "agrawal"])
def test_the_naive_bayes_leaves_give_rivers_probabilities(leaves, stream, delay):
    """Learned at once (the leaf's prediction kept from test to train) or `delay` events after
    the prediction (the leaf has learned others since: computed again). Agrawal's leaves (2
    classes, 9 features) take the loop; LEDDrift's (10 x 24) the table, whose sums run in
    another order: to 1e-12."""
    from river.datasets import synth

    from pipeline.presets import HoeffdingTree

    rows = (synth.LEDDrift(seed=1, noise_percentage=0.1, irrelevant_features=True) if
            stream == "led" else synth.Agrawal(seed=1)).take(3000)
    ours = HoeffdingTree(grace_period=50, delta=0.01, leaf_prediction=leaves)
    river = tree.HoeffdingTreeClassifier(grace_period=50, delta=0.01, leaf_prediction=leaves)
    rng = random.Random(7)
    waiting: list[tuple[dict, object]] = []
    for x, y in rows:
        if rng.random() < 0.1:
            del x[rng.choice(list(x))]  # a missing feature now and then
        p, q = ours.predict_proba_one(x), river.predict_proba_one(x)
        assert p.keys() == q.keys() and all(abs(p[c] - q[c]) <= 1e-12 for c in p), (p, q)
        waiting.append((x, y))
        if len(waiting) > delay:
            x_, y_ = waiting.pop(0)
            ours.learn_one(x_, y_)
            river.learn_one(x_, y_)
    if stream == "agrawal":  # 10 classes need more events to split; 2 do not
        assert ours.height > 1  # leaves made at a split are the inlined ones too


@pytest.mark.parametrize("stream", ["led", "agrawal"])
def test_a_leaf_activated_again_predicts_from_its_new_observers(stream):
    """River gives a leaf new, empty observers when it deactivates and activates it again (its
    class weights stay): the kept naive Bayes terms (a table for LEDDrift's 10 x 24, rows for
    Agrawal's 2 x 9) are read again from them, and the predictions stay River's."""
    from river.datasets import synth

    from pipeline.presets import HoeffdingTree

    rows = list((synth.LEDDrift(seed=2, noise_percentage=0.1, irrelevant_features=True) if
                 stream == "led" else synth.Agrawal(seed=2)).take(2400))
    ours = HoeffdingTree(grace_period=50, delta=0.01, leaf_prediction="nb")
    river = tree.HoeffdingTreeClassifier(grace_period=50, delta=0.01, leaf_prediction="nb")
    compared = 0
    for i, (x, y) in enumerate(rows):
        if i in (600, 1500):  # every leaf off and on again, as River's size limit may do
            for model in (ours, river):
                for leaf in model._find_leaves():
                    leaf.deactivate()
                    leaf.activate()
        p, q = ours.predict_proba_one(x), river.predict_proba_one(x)
        assert p.keys() == q.keys() and all(abs(p[c] - q[c]) <= 1e-12 for c in p), (i, p, q)
        compared += i > 600
        ours.learn_one(x, y)
        river.learn_one(x, y)
    assert compared > 1000


@pytest.mark.parametrize("leaves", ["nba", "nb"])
def test_the_leaves_observers_learn_rivers_numbers_to_the_last_bit(leaves):
    """The inlined splitter update: every leaf's Gaussian observers (count, mean, variance sum,
    extremes) equal River's tree's after the same events, weights, a missing feature now and
    then, booleans, integers and a string feature (River's nominal splitter) included."""
    from river.datasets import synth

    from pipeline.presets import HoeffdingTree

    ours = HoeffdingTree(grace_period=50, delta=0.01, leaf_prediction=leaves)
    river = tree.HoeffdingTreeClassifier(grace_period=50, delta=0.01, leaf_prediction=leaves)
    rng = random.Random(3)
    for i, (x, y) in enumerate(synth.Agrawal(seed=2).take(4000)):
        x = dict(x, flag=i % 3 == 0, colour="rgb"[i % 3])
        if rng.random() < 0.1:
            del x[rng.choice(list(x))]
        w = rng.choice([1.0, 1.0, 2.0, 0.5])
        ours.learn_one(x, y, w=w)
        river.learn_one(x, y, w=w)

    def observers(model):
        found = []
        for leaf in model._find_leaves():
            for att, splitter in sorted(leaf.splitters.items()):
                if not hasattr(splitter, "_min_per_class"):  # the string: River's nominal one
                    continue
                found.append((att, splitter._min_per_class, splitter._max_per_class, {
                    c: (g._var.mean.n, g._var.mean._mean, g._var._S)
                    for c, g in splitter._att_dist_per_class.items()}))
        return found

    mine, rivers = observers(ours), observers(river)
    assert ours.height > 1 and len(mine) > 20  # leaves made at splits learned too
    assert mine == rivers


def test_the_fast_gaussian_splitter_suggests_rivers_split_to_the_last_bit():
    from river.tree.split_criterion import InfoGainSplitCriterion
    from river.tree.splitter import GaussianSplitter

    from pipeline.leaves import FastGaussianSplitter

    rng = random.Random(11)
    criterion = InfoGainSplitCriterion(min_branch_fraction=0.01)
    compared = 0
    for trial in range(40):
        ours, river = FastGaussianSplitter(), GaussianSplitter()
        stats: dict = {}
        classes = rng.randint(2, 6)
        for _ in range(rng.randint(1, 300)):
            c = rng.randrange(classes)
            # Some classes constant (no deviation), some spread, some beyond the others' range.
            value = 3.0 if c == 0 and trial % 3 == 0 else rng.gauss(c, 1 + c) + 10 * (c == 5)
            w = rng.choice([1.0, 0.5, 2.0])
            ours.update(value, c, w)
            river.update(value, c, w)
            stats[c] = stats.get(c, 0.0) + w
        if trial % 4 == 1:  # a rare class far away: a branch under 1% of the weight, no merit
            ours.update(1000.0, 9, 0.01)
            river.update(1000.0, 9, 0.01)
            stats[9] = 0.01
        a = ours.best_evaluated_split_suggestion(criterion, stats, "f", True)
        b = river.best_evaluated_split_suggestion(criterion, stats, "f", True)
        assert (a.merit, a.split_info, a.children_stats) == (b.merit, b.split_info,
                                                              b.children_stats)
        compared += a.merit > -math.inf
    assert compared > 20  # most trials had a real split to compare


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_the_passive_aggressive_preset_model_is_rivers_to_the_last_bit(mode):
    from pipeline.stacked import PassiveAggressive

    ours = PassiveAggressive(C=0.5, mode=mode)
    river = linear_model.PAClassifier(C=0.5, mode=mode)
    rng = random.Random(mode)
    for i, (x, y) in enumerate(bundled("elec", limit=1500)):
        x = dict(x, flag=i % 3 == 0, count=i % 7)  # booleans and integers too
        if i % 100 == 0:
            x = {}  # no feature: a norm of 0
        elif rng.random() < 0.2:
            del x[rng.choice(list(x))]
        assert ours.predict_proba_one(x) == river.predict_proba_one(x)
        ours.learn_one(x, y == 1)
        river.learn_one(x, y == 1)
    assert dict(ours.weights) == dict(river.weights) and ours.intercept == river.intercept


@pytest.mark.parametrize("settings", [{}, {"optimizer": "sgd 0.3", "intercept_lr": 0.2,
                                       "clip_gradient": 0.05}, {"l2": 0.01}])
def test_the_logistic_regression_preset_model_is_rivers_to_the_last_bit(settings):
    from pipeline.stacked import LogisticRegression

    def make(cls):
        kw = dict(settings)
        if "optimizer" in kw:
            kw["optimizer"] = optim.SGD(0.3)
        return cls(**kw)

    ours, river = make(LogisticRegression), make(linear_model.LogisticRegression)
    rng = random.Random(7)
    for i, (x, y) in enumerate(bundled("elec", limit=3000)):
        # booleans, integers, missing features, no feature at all, and values large enough for
        # the log loss's and the sigmoid's cut-offs; a weight other than 1 now and then
        x = dict(x, flag=i % 3 == 0, count=i % 7, loud=rng.choice([0.0, 500.0, -900.0]))
        if i % 100 == 0:
            x = {}
        elif rng.random() < 0.2:
            del x[rng.choice(list(x))]
        assert ours.predict_proba_one(x) == river.predict_proba_one(x)
        w = 1.0 + (i % 3) * 0.7
        ours.learn_one(x, y == 1, w=w)
        river.learn_one(x, y == 1, w=w)
    assert ours.weights == river.weights and ours.intercept == river.intercept
    assert ours._plain == (not settings.get("l2"))  # an L2 penalty runs River's own code
    if ours._plain:  # its path was chosen from the settings: River's `mutate` may not change them
        with pytest.raises(ValueError, match="not a mutable attribute"):
            ours.mutate({"l2": 0.1})


def test_the_typed_scaler_is_rivers_standard_scaler_to_the_last_bit_on_numbers():
    from pipeline.preprocessing import TypedScaler

    ours, river = TypedScaler(), preprocessing.StandardScaler()
    rng = random.Random(5)
    for i, (x, _) in enumerate(bundled("elec", limit=3000)):
        x = dict(x, flag=i % 4 == 0)
        if rng.random() < 0.2:
            del x[rng.choice(list(x))]  # a missing feature keeps its statistics
        ours.learn_one(x)
        river.learn_one(x)
        assert ours.transform_one(x) == river.transform_one(x)
    assert ours.transform_one({"unseen": 2.0, "nswprice": 0.1}) == river.transform_one(
        {"unseen": 2.0, "nswprice": 0.1})


def test_learning_and_scaling_in_one_pass_is_learning_then_scaling_to_the_last_bit():
    from pipeline.preprocessing import LARGEST, SharedScaler, TypedScaler

    rng = random.Random(11)
    kinds = [
        lambda: rng.gauss(3.0, 2.0),
        lambda: rng.gauss(3.0, 2.0) * 1e4 if rng.random() < 0.05 else rng.gauss(3.0, 2.0),
        lambda: rng.random() < 0.5,  # a boolean
        lambda: rng.choice("abc"),  # a string
        lambda: 7.0,  # a constant: zero variance
        lambda: rng.choice([LARGEST * 10, -1e300, 1.0]),  # beyond the largest value learned
        lambda: rng.randrange(-5, 5),  # an integer
    ]
    for which in range(len(kinds) + 1):
        one, two, shared = TypedScaler(), TypedScaler(), SharedScaler()
        for i in range(400):
            names = range(len(kinds)) if which == len(kinds) else [which, 0]
            x = {f"f{k}": kinds[k]() for k in names if rng.random() < 0.9}
            one.learn_one(x)
            expected = one.transform_one(x)
            got = two.learn_transform_one(x)
            shared.expect(x, learning=True)
            shared.transform_one(x)  # a scaling from before the learning, kept until it
            assert got == expected and list(got) == list(expected), (which, i, x)
            assert [str(v) for v in got.values()] == [str(v) for v in expected.values()]
            assert shared.learn_transform_one(x) == expected
            assert shared.learn_transform_one(x) == expected  # a second member: not learned again
        assert two.stats == one.stats and two.values == one.values
        assert shared.stats == one.stats


def test_a_typed_scaler_pickled_by_the_previous_version_scales_as_it_did():
    import pickle

    from pipeline.preprocessing import TypedScaler

    scaler = TypedScaler()
    for x, _ in bundled("elec", limit=500):
        scaler.learn_one(x)
    old = TypedScaler.__new__(TypedScaler)  # the previous version's state: a dict per statistic
    old.__dict__.update(
        counts={i: s[0] for i, s in scaler.stats.items()},
        means={i: s[1] for i, s in scaler.stats.items()},
        vars={i: s[2] for i, s in scaler.stats.items()})
    restored = pickle.loads(pickle.dumps(old))
    x = next(iter(bundled("elec", limit=1)))[0]
    assert restored.stats == scaler.stats
    assert restored.transform_one(x) == scaler.transform_one(x)


# --- the scaler the scaled members share ------------------------------------------------------


def scaled_members(share_scaler, **kwargs):
    return DriftEnsemble({name: build_model(name) for name in
                          ("passive_aggressive", "logistic_regression", "knn", "hoeffding_tree")},
                         share_scaler=share_scaler, **kwargs)


def test_the_scaled_members_share_one_scaler_that_learns_each_event_once():
    learner = scaled_members(True)
    scalers = {id(m.model.scaler) for m in learner.members if hasattr(m.model, "scaler")}
    assert len(scalers) == 1 and learner.shared_scaler is not None
    rows = list(bundled("elec", limit=500))
    for x, y in rows:
        learner.step(x, y)
    counts = {s[0] for s in learner.shared_scaler.stats.values()}
    assert counts == {500}  # three members, each event learned once


@pytest.mark.parametrize("stream", ["elec", "multiclass"])
def test_a_shared_scaler_gives_each_member_what_its_own_would(stream):
    """All awake, weight 1 (no drift response): sharing changes no number, only the cost."""
    rows = list(bundled("elec", limit=3000)) if stream == "elec" else list(
        numeric_multiclass(2000))
    shared, own = scaled_members(True), scaled_members(False)
    assert own.shared_scaler is None
    for x, y in rows:
        a, b = shared.step(x, y), own.step(x, y)
        assert a.prediction.members == b.prediction.members
        assert a.prediction.proba == b.prediction.proba
    assert shared.stats()["ensemble"].accuracy == own.stats()["ensemble"].accuracy


def test_a_reset_member_and_a_checkpoint_keep_the_shared_scaler():
    import pickle

    learner = scaled_members(True, detector=None)
    for x, y in bundled("elec", limit=300):
        learner.step(x, y)
    shared = learner.shared_scaler
    member = learner.members[1]
    member.reset("drift")
    assert member.model.scaler is shared and shared.stats  # fresh model, the stream's scaling
    restored = pickle.loads(pickle.dumps(learner))
    scalers = {id(m.model.scaler) for m in restored.members if hasattr(m.model, "scaler")}
    assert scalers == {id(restored.shared_scaler)}
    assert restored.shared_scaler.stats == shared.stats
    restored.members[0].reset("drift")
    assert restored.members[0].model.scaler is restored.shared_scaler


def test_an_ensemble_pickled_before_scalers_were_shared_runs_with_its_own():
    import pickle

    learner = scaled_members(False)
    for x, y in bundled("elec", limit=300):
        learner.step(x, y)
    state = pickle.loads(pickle.dumps(learner))
    # the previous version's state: no such attributes at all
    del state.__dict__["shared_scaler"], state.__dict__["share_scaler"]
    for member in state.members:
        object.__delattr__(member, "shared")
    restored = pickle.loads(pickle.dumps(state))
    assert restored.shared_scaler is None and all(m.shared is None for m in restored.members)
    rows = list(bundled("elec", limit=400))[300:]
    for x, y in rows:
        assert restored.step(x, y).prediction == learner.step(x, y).prediction


# --- outliers and values near the float limit ----------------------------------------------


def test_an_outlier_is_learned_and_scaled_as_ten_deviations():
    from pipeline.preprocessing import CLIP, WARMUP, TypedScaler

    ours, river = TypedScaler(), preprocessing.StandardScaler()
    rng = random.Random(2)
    for _ in range(WARMUP):
        x = {"a": rng.gauss(5.0, 0.1)}
        ours.learn_one(x)
        river.learn_one(x)
    count, mean, var, dev = ours.stats["a"]
    assert (count, mean, var) == (river.counts["a"], river.means["a"], river.vars["a"])
    assert ours.transform_one({"a": 1e6}) == {"a": CLIP}
    assert ours.transform_one({"a": -1e6}) == {"a": -CLIP}
    ours.learn_one({"a": 1e6})
    river.learn_one({"a": mean + CLIP * dev})  # what it learned instead
    assert ours.stats["a"][:3] == [river.counts["a"], river.means["a"], river.vars["a"]]
    assert ours.transform_one({"a": 5.05}) == river.transform_one({"a": 5.05})


def test_the_first_values_are_never_clipped():
    from pipeline.preprocessing import WARMUP, TypedScaler

    ours, river = TypedScaler(), preprocessing.StandardScaler()
    for i in range(WARMUP):
        x = {"a": 1.0 + 1e-9 * (i % 2)} if i < WARMUP - 1 else {"a": 50.0}
        assert ours.transform_one(x) == river.transform_one(x)
        ours.learn_one(x)
        river.learn_one(x)
    assert ours.stats["a"][:3] == [river.counts["a"], river.means["a"], river.vars["a"]]


def test_a_value_near_the_float_limit_leaves_every_model_finite():
    rows = list(bundled("elec", limit=3000))
    for i in range(0, 3000, 50):
        rows[i][0]["vicprice"] = 1e308 if i % 100 else -1.7e308
    learner = build_learner(Settings())
    for x, y in rows:
        learner.step(x, y)
    stats = learner.shared_scaler.stats
    assert all(v - v == 0.0 for s in stats.values() for v in s[:3])
    report = learner.stats()
    assert all(sum(report[m].resets.values()) == 0 for m in report)
    assert report["passive_aggressive"].accuracy > 0.8 and report["ensemble"].accuracy > 0.8


def test_two_outliers_cost_the_default_set_almost_nothing_on_elec2():
    rows = list(bundled("elec", limit=12000))
    clean = evaluate(build_learner(Settings()), rows)["models"]["ensemble"]["accuracy"]
    for i in (2000, 7000):
        rows[i][0]["nswprice"] = 1e6
    hit = evaluate(build_learner(Settings()), rows)["models"]["ensemble"]["accuracy"]
    assert hit > clean - 0.005, (clean, hit)


def test_an_identifier_among_the_features_does_not_grow_the_linear_models_for_good():
    """A feature with a new string each event (a session id): the linear and kNN members hold
    at most MAX_VALUES indicators for it, then one shared by every other value."""
    import pickle

    from pipeline.preprocessing import MAX_VALUES, OTHER

    rng = random.Random(4)
    learner = build_learner(Settings())
    for i in range(3 * MAX_VALUES):
        a = rng.random()
        learner.step({"sid": f"s{i}", "colour": "rgb"[i % 3], "a": a}, "yn"[a > 0.5])
    scaler = learner.shared_scaler
    assert len(scaler.values["sid"]) == MAX_VALUES and scaler.values["colour"] == set("rgb")
    assert scaler.transform_one({"sid": "s5", "colour": "g", "a": 0.5}).keys() == {
        "sid=s5", "colour=g", "a"}
    assert ("sid", OTHER) in scaler.transform_one({"sid": "new", "a": 0.5})
    lr = learner.members[1].model.classifier.binary
    assert MAX_VALUES < len(lr.weights) <= MAX_VALUES + 5  # sid's, its OTHER, colour's, a
    restored = pickle.loads(pickle.dumps(scaler))
    assert restored.values == scaler.values and type(restored) is type(scaler)


def test_a_typed_scaler_of_the_version_without_string_values_learns_them_from_now_on():
    import pickle

    from pipeline.preprocessing import OTHER, TypedScaler

    scaler = TypedScaler()
    scaler.learn_one({"c": "red", "t": 1.0})
    old = TypedScaler.__new__(TypedScaler)
    old.__dict__.update(stats=scaler.stats)  # the previous version: no `values`
    restored = pickle.loads(pickle.dumps(old))
    assert restored.transform_one({"c": "red"}) == {("c", OTHER): 1}  # not learned here yet
    restored.learn_one({"c": "red"})
    assert restored.transform_one({"c": "red"}) == {"c=red": 1}


@pytest.mark.parametrize("binary, seed", [(False, 9), (True, 10)])
def test_a_tree_with_kept_branch_weights_follows_rivers_paths_with_missing_features(binary, seed):
    """40 % of the values missing and a string feature (multiway branches and unseen values, or
    a value against the rest as the default set's tree splits): the tree keeps its branches'
    weights, and predicts as River's recomputing them, at every event."""
    from pipeline.leaves import CachedWeight
    from pipeline.presets import HoeffdingTree

    ours = HoeffdingTree(grace_period=50, delta=0.01, binary_split=binary)
    river = tree.HoeffdingTreeClassifier(grace_period=50, delta=0.01, binary_split=binary)
    rng = random.Random(seed)
    for i in range(6000):
        x = {f"f{j}": rng.random() for j in range(6)}
        x["shop"] = f"s{rng.randrange(40 + i // 300)}"  # new values keep coming (under 64)
        y = int(x["f0"] + x["f1"] > 1.0) + (x["shop"] in ("s1", "s2", "s3"))
        x = {k: v for k, v in x.items() if rng.random() > 0.4}
        tagged = {(f"{k}=" if isinstance(v, str) else k): v for k, v in x.items()}
        p, q = ours.predict_proba_one(x), river.predict_proba_one(tagged)
        assert p.keys() == q.keys() and all(abs(p[c] - q[c]) <= 1e-12 for c in p), (i, p, q)
        ours.learn_one(x, y)
        river.learn_one(tagged, y)
    branches = [n for n in ours._root.iter_dfs() if isinstance(n, CachedWeight)]
    assert ours.height > 3 and branches  # kept weights were used, and kept up
    assert any("Nominal" in type(b).__name__ for b in branches)  # a split on the string
    assert all(b.total_weight == sum(c.total_weight for c in filter(None, b.children))
               for b in branches)


def test_the_fast_tree_preset_grows_rivers_majority_class_tree_to_the_last_bit():
    """`hoeffding_tree_fast` learns through driftline's observers, splitters and branches: the
    very tree River's `HoeffdingTreeClassifier(leaf_prediction="mc")` grows, on a stream with
    missing values, a string feature and sample weights."""
    from pipeline.leaves import CachedWeight, FastLeafMajorityClass
    from pipeline.presets import FastHoeffdingTree

    ours = FastHoeffdingTree()
    river = tree.HoeffdingTreeClassifier(grace_period=100, delta=1e-3, leaf_prediction="mc")
    rng = random.Random(14)
    from river.datasets import synth

    for i, (x, y) in enumerate(synth.Agrawal(classification_function=4, seed=5).take(6000)):
        x = dict(x, shop=f"s{i % 7}")
        if rng.random() < 0.2:
            del x[rng.choice(list(x))]
        w = rng.choice([1.0, 1.0, 2.0, 0.5])
        p, q = ours.predict_proba_one(x), river.predict_proba_one(x)
        assert p.keys() <= q.keys() and all(abs(p[c] - q[c]) <= 1e-12 for c in p), i
        ours.learn_one(x, y, w=w)
        river.learn_one(x, y, w=w)

    def leaves(model):
        return [(leaf.depth, leaf.stats, {a: (s._min_per_class, s._max_per_class, {
            c: (g._var.mean.n, g._var.mean._mean, g._var._S)
            for c, g in s._att_dist_per_class.items()}) for a, s in leaf.splitters.items()
            if hasattr(s, "_min_per_class")}) for leaf in model._find_leaves()]

    assert ours.height > 2 and leaves(ours) == leaves(river)
    assert all(type(leaf) is FastLeafMajorityClass for leaf in ours._find_leaves())
    assert any(isinstance(n, CachedWeight) for n in ours._root.iter_dfs())


def test_a_multiway_branch_keeps_rivers_most_travelled_child_as_the_traffic_shifts():
    """A tree split on a string feature, events without it following the most travelled child,
    and the traffic moving to another child until it overtakes: the kept answer is River's at
    every event."""
    from pipeline.leaves import CachedWeight
    from pipeline.presets import HoeffdingTree

    ours = HoeffdingTree(grace_period=50, delta=0.01)
    river = tree.HoeffdingTreeClassifier(grace_period=50, delta=0.01)
    rng = random.Random(12)
    moved = 0
    for i in range(8000):
        hot = 0 if i < 1000 else 3  # the busiest value changes, and its child overtakes
        c = hot if rng.random() < 0.9 else rng.randrange(5)
        x = {"c": f"v{c}", "a": rng.random()}
        y = c % 3 if rng.random() < 0.9 else rng.randrange(3)
        if rng.random() < 0.1:
            del x["c"]
        tagged = {(f"{k}=" if isinstance(v, str) else k): v for k, v in x.items()}
        p, q = ours.predict_proba_one(x), river.predict_proba_one(tagged)
        assert p.keys() == q.keys() and all(abs(p[c_] - q[c_]) <= 1e-12 for c_ in p), (i, p, q)
        root = ours._root
        if isinstance(root, CachedWeight) and root.max_branches() == -1 and "c" not in x:
            mine = root.most_common_path()[0]
            assert mine == river._root.most_common_path()[0], i
            moved += mine != 0
        ours.learn_one(x, y)
        river.learn_one(tagged, y)
    assert moved > 100  # the most travelled child changed, and was followed


def test_a_leafs_majority_prediction_is_rivers_to_the_last_bit():
    from river.tree.nodes.htc_nodes import LeafMajorityClass

    from pipeline.leaves import FastLeafNaiveBayesAdaptive

    rng = random.Random(6)
    for _ in range(200):
        stats = {c: rng.choice([0.0, 1.0, rng.random() * 100]) for c in "abcd"[:rng.randrange(5)]}
        ours = FastLeafNaiveBayesAdaptive(dict(stats), 0, None)
        river = LeafMajorityClass(dict(stats), 0, None)
        assert ours._majority() == river.prediction({})


def test_knn_finds_the_same_neighbours_whatever_the_order_of_the_features():
    """Dense events, most with every feature in the order first seen (copied into the row at
    once), some shuffled or with a feature missing (written column by column): the neighbours
    are a brute-force search's."""
    import numpy as np

    from pipeline.neighbors import WindowKNN

    rng = random.Random(12)
    model = WindowKNN(k=3, window=150)
    seen: list[tuple[dict, str]] = []
    for i in range(500):
        names = [f"f{j}" for j in range(6 if i < 200 else 9)]  # new features on the way
        if rng.random() < 0.2:
            rng.shuffle(names)
        if rng.random() < 0.1:
            names.pop(rng.randrange(len(names)))
        x = {n: rng.gauss(0, 1) for n in names}
        y = "abc"[i % 3]
        if len(seen) >= 3:
            window = seen[-150:]
            known = sorted({n for z, _ in window for n in z})
            here = np.array([x.get(n, 0.0) for n in known])
            d = [float(((np.array([z.get(n, 0.0) for n in known]) - here) ** 2).sum())
                 for z, _ in window]
            expected: dict = {}
            for j in sorted(range(len(window)), key=d.__getitem__)[:3]:
                expected[window[j][1]] = expected.get(window[j][1], 0.0) + 1 / 3
            assert model.predict_proba_one(x) == expected, i
        model.learn_one(x, y)
        seen.append((x, y))


def test_knn_finds_the_same_neighbours_when_most_features_are_absent():
    """Events of a few features each out of many (one-hot strings): the distances come from the
    columns the event has; the neighbours are a brute-force search's."""
    import numpy as np

    from pipeline.neighbors import WindowKNN

    rng = random.Random(10)
    model = WindowKNN(k=3, window=200)
    seen: list[tuple[dict, str]] = []
    checked = 0
    for i in range(600):
        x = {f"f{j}": rng.random() for j in rng.sample(range(60), 3)}
        y = "abc"[i % 3]
        if len(seen) >= 3:
            proba = model.predict_proba_one(x)
            window = seen[-200:]
            names = sorted({n for z, _ in window for n in z} | set(x))
            here = np.array([x.get(n, 0.0) for n in names])
            d = [float(((np.array([z.get(n, 0.0) for n in names]) - here) ** 2).sum())
                 for z, _ in window]
            nearest = sorted(range(len(window)), key=d.__getitem__)[:3]
            expected: dict = {}
            for j in nearest:
                expected[window[j][1]] = expected.get(window[j][1], 0.0) + 1 / 3
            assert proba.keys() == expected.keys(), i
            checked += 1
        model.learn_one(x, y)
        seen.append((x, y))
    assert checked > 500 and len(model._index) == 60


@pytest.mark.parametrize("delay", [0, 10])
def test_evaluate_reports_the_time_spent_reading_its_rows_apart(delay):
    """A slow source (a file being parsed): its time is in `read_seconds`, the rest of
    `seconds` is the learning, whose rate is then the one of rows in memory."""
    import time

    rows = list(bundled("elec", limit=1500))

    def slow():
        for i, row in enumerate(rows):
            if i % 100 == 0:
                time.sleep(0.02)  # 15 pauses: 0.3 s of reading
            yield row

    report = evaluate(build_learner(one_model("logistic_regression")), slow(), delay=delay)
    in_memory = evaluate(build_learner(one_model("logistic_regression")), rows, delay=delay)
    assert report["events"] == 1500 and report["models"] == in_memory["models"]
    assert 0.3 <= report["read_seconds"] < report["seconds"]
    assert report["seconds"] - report["read_seconds"] < 0.3 + in_memory["seconds"]
    assert in_memory["read_seconds"] < 0.3


@pytest.mark.parametrize("delay", [0, 10])
def test_evaluate_rejects_rows_beyond_max_abs_value_as_serve_does(delay):
    """A number near the float limit overflows a model's arithmetic (the tree's naive Bayes
    raised on 1e308): such a row is rejected, `out_of_range`, and the others are learned as if
    it had not been there."""
    rows = list(bundled("elec", limit=1500))
    hostile = []
    for i, (x, y) in enumerate(rows):
        if i % 50 == 7:
            hostile.append(({**x, "nswprice": 1e308 if i % 100 == 7 else -(10**400)}, y))
        hostile.append((x, y))
    report = evaluate(build_learner(Settings()), hostile, delay=delay, max_abs_value=1e12)
    clean = evaluate(build_learner(Settings()), rows, delay=delay, max_abs_value=1e12)
    assert report["rejected"] == 30 and report["rejections"] == {"out_of_range": 30}
    assert report["events"] == 1530 and report["models"] == clean["models"]
    assert all(m["failed"] == 0 for m in report["models"].values())
    unbounded = evaluate(build_learner(Settings()), hostile, delay=delay)
    assert unbounded["rejected"] == 0 and unbounded["events"] == 1530


@pytest.mark.parametrize("preset", ["hoeffding_tree_quick", "hoeffding_tree_fast",
                                    "hoeffding_tree", "hoeffding_adaptive_tree",
                                    "adaptive_random_forest"])
def test_an_identifier_among_the_features_leaves_a_tree_bounded(preset):
    """A new string value every event (a forgotten UUID column): a tree tells apart the first
    64 values of a feature and no more, so it cannot grow a branch per event or keep a count
    per value for good; driftline's own trees, which split a string on one value against the
    rest, learn the concept as if the column were not there."""
    import pickle

    from pipeline.preprocessing import TREE_MAX_VALUES

    rng = random.Random(4)
    rows = []
    for _ in range(3000):
        a, b = rng.random(), rng.random()
        rows.append(({"a": a, "b": b, "id": f"{rng.getrandbits(64):016x}"}, a + b > 1.0))

    def accuracy(model, rows):
        right = 0
        for x, y in rows:
            right += model.predict_one(x) == y
            model.learn_one(x, y)
        return right / len(rows)

    model = build_model(preset)
    with_id = accuracy(model, rows)
    trees = list(model.data) if preset == "adaptive_random_forest" else [model]
    assert all(t.n_nodes <= 2 * TREE_MAX_VALUES + 200 for t in trees), [t.n_nodes for t in trees]
    assert len(pickle.dumps(model)) < 2_000_000 * len(trees)
    for t in trees:  # no leaf keeps a count per identifier
        leaves = t._root.iter_leaves() if hasattr(t._root, "iter_leaves") else [t._root]
        observed = [len(s._att_values) for leaf in leaves
                    for s in getattr(leaf, "splitters", {}).values() if hasattr(s, "_att_values")]
        assert observed and max(observed) <= TREE_MAX_VALUES + 1, max(observed)
    assert len(model._strings.values["id="]) == TREE_MAX_VALUES
    if preset in ("hoeffding_tree_quick", "hoeffding_tree_fast"):
        without = accuracy(build_model(preset), [({"a": x["a"], "b": x["b"]}, y) for x, y in rows])
        assert with_id >= without - 0.01, (with_id, without)


_TIE_SCRIPT = """
import itertools, sys
from pipeline.presets import build_model
model = build_model(sys.argv[1])
# every one-value split of `v` is as good as the next: which one the tree takes breaks a tie
for i, v in zip(range(2000), itertools.cycle(["north", "south", "east", "west"])):
    model.learn_one({"v": v}, v in ("north", "south"))
root = model._root
print(repr(getattr(root, "value", None)))
"""


@pytest.mark.parametrize("preset", ["hoeffding_tree_quick", "hoeffding_tree_fast"])
def test_a_tree_breaks_a_tie_between_string_values_alike_in_every_process(preset):
    """River's splitter looks for the best one-value split through a set, whose order of
    strings changes with the process's hash seed: a restarted service (or a second run)
    broke such ties otherwise. The values are now tried in the order they came."""
    import subprocess
    import sys

    splits = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        done = subprocess.run([sys.executable, "-c", _TIE_SCRIPT, preset], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        splits.add(done.stdout.strip())
    assert len(splits) == 1 and splits < {"'north'", "'south'", "'east'", "'west'"}, splits


def test_a_trees_gaussians_carry_no_random_generator_into_checkpoints():
    """River's Gaussian seeds a random generator of its own (3.8 kB of its 4.0 kB pickled); a
    tree keeps one per leaf, feature and class and never samples: its checkpoints were mostly
    generators (2.76 MB for the default set's tree after 20,000 Elec2 events, 0.10 MB
    without)."""
    import pickle

    from pipeline.leaves import LeanGaussian

    tree = build_model("hoeffding_tree_quick")
    for x, y in bundled("elec", limit=5000):
        tree.learn_one(x, y)
    blob = pickle.dumps(tree)
    assert b"Random" not in blob
    gaussians = [g for leaf in tree._root.iter_leaves() for s in leaf.splitters.values()
                 for g in getattr(s, "_att_dist_per_class", {}).values()]
    assert gaussians and all(type(g) is LeanGaussian for g in gaussians)
    assert len(blob) < 400 * len(gaussians)  # River's would need some 4,000 bytes each
    g = gaussians[0]
    assert math.isfinite(g.sample())  # a generator only when asked for
    assert isinstance(pickle.loads(pickle.dumps(g)).sample(), float)


@pytest.mark.parametrize("preset", ["hoeffding_adaptive_tree", "adaptive_random_forest"])
def test_rivers_tree_presets_predict_as_rivers_own_with_a_fraction_of_the_state(preset):
    """The two presets that are River's trees (their Gaussians lean, `LeanGaussianSplitter`)
    give River's probabilities at every event, and pickle to a fraction of River's size."""
    import pickle

    rivers = {"hoeffding_adaptive_tree": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=1),
              "adaptive_random_forest": lambda: forest.ARFClassifier(seed=1)}[preset]()
    ours = build_model(preset)
    for x, y in bundled("elec", limit=1500):
        assert ours.predict_proba_one(x) == pytest.approx(rivers.predict_proba_one(x), abs=1e-12)
        ours.learn_one(x, y)
        rivers.learn_one(x, y)
    assert len(pickle.dumps(ours)) * 5 < len(pickle.dumps(rivers))


def test_argmax_is_max_by_value_first_at_a_tie():
    rng = random.Random(7)
    values = [0.0, 0.25, 0.5, 1.0, -1.0, math.inf, math.nan]
    for _ in range(2_000):
        keys = rng.sample(["a", "b", 0, 1, True, "c"], rng.randint(1, 4))
        scores = {k: rng.choice(values) for k in keys}
        assert argmax(scores) == max(scores, key=scores.__getitem__), scores
    assert argmax({False: 0.5, True: 0.5}) is False  # the first at a tie
    assert argmax({"x": math.nan, "y": 1.0}) == "x"  # as max: nothing is greater than NaN
