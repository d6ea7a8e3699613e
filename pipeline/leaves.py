"""Naive Bayes leaves for River's Hoeffding trees, with River's arithmetic inlined.

A Hoeffding tree's default leaves (adaptive naive Bayes) compute a naive Bayes prediction on
every event twice, once to predict and once while learning (to track whether naive Bayes beats
the majority class), through River's `tree.utils.do_naive_bayes_prediction`: for every class and
feature, a splitter method call and a Gaussian method call. With many classes and features that
is most of a tree's cost (LEDDrift, 10 classes and 24 features: about 650 µs an event).
`naive_bayes` does the very same operations in the same order with the Gaussian's log-density
written out, so its probabilities are River's to the last bit (tests/unit/test_pipeline.py).
"""

from __future__ import annotations

import math
from typing import Any

from river.tree.nodes.htc_nodes import LeafNaiveBayes, LeafNaiveBayesAdaptive
from river.tree.splitter import GaussianSplitter

_HALF_LOG_TAU = 0.5 * math.log(math.tau)  # as river.proba.gaussian


def naive_bayes(x: dict, stats: dict, splitters: dict) -> dict:
    """River's `do_naive_bayes_prediction(x, stats, splitters)`, inlined for Gaussian splitters."""
    total_weight = sum(stats.values())
    if not stats or total_weight == 0:
        return {}
    # (Gaussian?, value, per-class Gaussians or the splitter), in the splitters' order
    observed: list[tuple[bool, Any, Any]] = []
    for att, splitter in splitters.items():
        if att in x:
            if type(splitter) is GaussianSplitter:
                observed.append((True, x[att], splitter._att_dist_per_class))
            else:
                observed.append((False, x[att], splitter))
    log = math.log
    votes = {}
    for c, weight in stats.items():
        if weight <= 0:
            votes[c] = 0.0
            continue
        vote = log(weight / total_weight)
        for gaussian, value, source in observed:
            if gaussian:
                dist = source.get(c)
                if dist is None:
                    continue  # River's log-density is -inf here: left out
                var = dist._var
                n = var.mean.n
                if n > var.ddof:
                    variance = var._S / (n - var.ddof)
                    if variance > 0.0:
                        vote += (value - var.mean._mean) ** 2 / (-2.0 * variance) - (
                            _HALF_LOG_TAU) - 0.5 * log(variance)
                continue
            log_proba = getattr(source, "cond_log_proba", None)
            if log_proba is not None:
                log_p = log_proba(value, c)
                if log_p > -math.inf:
                    vote += log_p
            else:
                p = source.cond_proba(value, c)
                vote += log(p) if p > 0 else 0.0
        votes[c] = vote
    max_ll = max(votes.values())
    lse = max_ll + log(sum(math.exp(v - max_ll) for v in votes.values()))
    return {c: math.exp(v - lse) for c, v in votes.items()}


class FastLeafNaiveBayes(LeafNaiveBayes):
    """River's `LeafNaiveBayes` with `naive_bayes`."""

    def prediction(self, x: dict, *, tree: Any = None) -> dict:
        if self.is_active() and self.total_weight >= tree.nb_threshold:
            return naive_bayes(x, self.stats, self.splitters)
        return super(LeafNaiveBayes, self).prediction(x)


class FastLeafNaiveBayesAdaptive(LeafNaiveBayesAdaptive):
    """River's `LeafNaiveBayesAdaptive` with `naive_bayes`.

    Test-then-train asks a leaf for the naive Bayes prediction of one event twice: to predict,
    then to learn. The second is the first's when it is the same dict and the leaf has learned
    nothing since (every learning adds its weight to the total), so it is kept from one to the
    other instead of computed again: the same numbers, half the work.
    """

    _nb_last: tuple[dict, float, dict] | None = None  # (x, total weight, prediction)

    def _naive_bayes(self, x: dict) -> dict:
        total = sum(self.stats.values())
        last = self._nb_last
        if last is not None and last[0] is x and last[1] == total:
            return last[2]
        proba = naive_bayes(x, self.stats, self.splitters)
        self._nb_last = (x, total, proba)
        return proba

    def learn_one(self, x: dict, y: Any, *, w: float = 1.0, tree: Any = None) -> None:
        if self.is_active():
            stats = self.stats
            if not stats or max(stats, key=stats.__getitem__) == y:  # the majority was right
                self._mc_correct_weight += w
            nb_pred = self._naive_bayes(x)
            if nb_pred and max(nb_pred, key=nb_pred.__getitem__) == y:
                self._nb_correct_weight += w
            self._nb_last = None
        super(LeafNaiveBayesAdaptive, self).learn_one(x, y, w=w, tree=tree)

    def prediction(self, x: dict, *, tree: Any = None) -> dict:
        if self.is_active() and self._nb_correct_weight >= self._mc_correct_weight:
            return dict(self._naive_bayes(x))  # a copy: the caller may change it
        return super(LeafNaiveBayesAdaptive, self).prediction(x)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_nb_last", None)  # an event's dict, not state
        return state


class FastLeaves:
    """Mixed into River's `HoeffdingTreeClassifier`: its naive Bayes leaves are the above."""

    def _new_leaf(self, initial_stats: dict | None = None, parent: Any = None) -> Any:
        leaf = super()._new_leaf(initial_stats, parent)  # type: ignore[misc]
        kind = type(leaf)
        if kind is LeafNaiveBayesAdaptive:
            leaf.__class__ = FastLeafNaiveBayesAdaptive
        elif kind is LeafNaiveBayes:
            leaf.__class__ = FastLeafNaiveBayes
        return leaf
