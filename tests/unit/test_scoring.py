"""Prequential scores: the rolling counts kept as the window moves equal a recount of it."""

import copy
import pickle
import random

from river import metrics, utils

from pipeline.scoring import Counts, Score


def pairs(n, seed=3):
    rng = random.Random(seed)
    classes = ["a", "b", "c", "d"]
    for i in range(n):
        y = rng.choice(classes[: 2 + (i // 300) % 3])  # classes come and go
        yield y, (y if rng.random() < 0.7 else rng.choice(classes))


def test_rolling_counts_equal_a_recount_of_the_window():
    score = Score(window=50)
    seen = []
    for y, pred in pairs(2000):
        score.add(y, pred)
        seen.append((y, pred))
        window = Counts.of(seen[-50:])
        assert score.recent.truth == window.truth
        assert score.recent.predicted == window.predicted
        assert score.recent.hits == window.hits
    assert score.rolling_f1 == window.f1()
    assert score.rolling_recall == window.recall()


def test_rolling_f1_equals_rivers_rolling_macro_f1_while_every_class_stays():
    score = Score(window=100)
    river = utils.Rolling(metrics.MacroF1, window_size=100)
    rng = random.Random(5)
    for _ in range(1000):
        y = rng.choice("ab")
        pred = y if rng.random() < 0.8 else rng.choice("ab")
        score.add(y, pred)
        river.update(y, pred)
    assert abs(score.rolling_f1 - river.get()) <= 1e-9


def test_a_score_pickled_by_an_older_version_carries_on():
    score = Score(window=30)
    for y, pred in pairs(100):
        score.add(y, pred)
    score.f1  # noqa: B018 - reading counts every pair into `all`
    # The slots of the previous version: the ring as two lists, every pair counted in `all`.
    old_slots = {
        "all": copy.deepcopy(score.all), "correct": score.correct,
        "ring_ok": bytearray(score.ring_ok),
        "ring_y": [p[0] for p in score.ring], "ring_pred": [p[1] for p in score.ring],
        "tested": score.tested, "window": score.window, "window_correct": score.window_correct,
    }
    old = Score.__new__(Score)
    old.__setstate__((None, old_slots))
    for y, pred in pairs(50, seed=4):
        old.add(y, pred)
        score.add(y, pred)
    assert (old.f1, old.recall, old.rolling_f1, old.rolling_recall) == (
        score.f1, score.recall, score.rolling_f1, score.rolling_recall)
    assert pickle.loads(pickle.dumps(score)).rolling_recall == score.rolling_recall


def test_cumulative_counts_equal_a_count_of_every_pair():
    score = Score(window=7)  # the ring wraps many times between two reads
    seen = list(pairs(500))
    for y, pred in seen:
        score.add(y, pred)
    every = Counts.of(seen)
    assert score.f1 == every.f1() and score.recall == every.recall()
