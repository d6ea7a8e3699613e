"""Naive Bayes leaves for River's Hoeffding trees, with River's arithmetic inlined.

A Hoeffding tree's default leaves (adaptive naive Bayes) compute a naive Bayes prediction on
every event twice, once to predict and once while learning (to track whether naive Bayes beats
the majority class), through River's `tree.utils.do_naive_bayes_prediction`: for every class and
feature, a splitter method call and a Gaussian method call. With many classes and features that
is most of a tree's cost (LEDDrift, 10 classes and 24 features: about 650 µs an event).
`naive_bayes` does the very same operations in the same order with the Gaussian's log-density
written out, so its probabilities are River's to the last bit (tests/unit/test_pipeline.py).

With many classes and features, even that loop is a large share of the cost (the default set
on 30,000 LEDDrift events under cProfile: 16.1 s of 65 s; 4.7 s with the table below).
`GaussianTable` keeps a leaf's per-class means and variances in numpy arrays, rebuilt only
for the class a learned event updates, and does the same arithmetic for all classes and
features at once: the same terms, added up in another order, so River's probabilities to about
1e-15 (tested to 1e-12).
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Hashable
from typing import Any

import numpy as np
from river import proba, stats
from river.tree.nodes.branch import (
    DTBranch,
    NominalBinaryBranch,
    NominalMultiwayBranch,
    NumericBinaryBranch,
    NumericMultiwayBranch,
)
from river.tree.nodes.htc_nodes import LeafMajorityClass, LeafNaiveBayes, LeafNaiveBayesAdaptive
from river.tree.split_criterion import InfoGainSplitCriterion
from river.tree.splitter import GaussianSplitter
from river.tree.splitter.nominal_splitter_classif import NominalSplitterClassif
from river.tree.utils import BranchFactory

_HALF_LOG_TAU = 0.5 * math.log(math.tau)  # as river.proba.gaussian
# Classes x Gaussian features from which a leaf uses the table. A setting, not a measured
# cross-over: a binary stream of a few features (Elec2, 2 x 8) keeps the loop, which needs no
# arrays; LEDDrift (10 x 24) takes the table.
TABLE_FROM = 48


def naive_bayes(x: dict, stats: dict, splitters: dict) -> dict:
    """River's `do_naive_bayes_prediction(x, stats, splitters)`, inlined for Gaussian splitters."""
    total_weight = sum(stats.values())
    if not stats or total_weight == 0:
        return {}
    # (Gaussian?, value, per-class Gaussians or the splitter), in the splitters' order
    observed: list[tuple[bool, Any, Any]] = []
    for att, splitter in splitters.items():
        if att in x:
            if type(splitter) in _GAUSSIAN:
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
    return _normalised(votes)


class LeanGaussian(proba.Gaussian):
    """River's `Gaussian` without a random number generator of its own until `sample` asks for
    one. A tree keeps a Gaussian per leaf, feature and class and never samples from it; River's
    seeds a `random.Random` for each (from the system: 11 µs), which then takes 2.9 kB of
    memory and 3.8 kB of every checkpoint (of 4.0 kB for the whole Gaussian)."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._var = stats.Var(ddof=1)

    def sample(self) -> float:
        if "_rng" not in self.__dict__:
            self._rng = random.Random(self.seed)
        return super().sample()


class LeanGaussianSplitter(GaussianSplitter):
    """River's `GaussianSplitter` with `LeanGaussian`s: the same numbers, for River's own trees
    (the `hoeffding_adaptive_tree` and `adaptive_random_forest` presets)."""

    def update(self, att_val: Any, target_val: Any, w: float) -> None:
        # River's `update`, written out with a lean Gaussian for a class's first value: one
        # call per feature and event, where a check before River's own cost 130 ns more each
        if att_val is None:
            return
        dist = self._att_dist_per_class.get(target_val)
        if dist is None:
            dist = self._att_dist_per_class[target_val] = LeanGaussian()
            self._min_per_class[target_val] = att_val
            self._max_per_class[target_val] = att_val
        else:
            if att_val < self._min_per_class[target_val]:
                self._min_per_class[target_val] = att_val
            if att_val > self._max_per_class[target_val]:
                self._max_per_class[target_val] = att_val
        dist.update(att_val, w)


class FastGaussianSplitter(LeanGaussianSplitter):
    """River's `GaussianSplitter`, its split candidates evaluated with each class's mean and
    deviation read once per attempt instead of once per candidate and class (River reads them
    through properties for every one of its 10 candidates), and the information gain (the
    Hoeffding trees' default criterion) written out: the same arithmetic, the same merits to
    the last bit, about a third of the cost of a split attempt. Its Gaussians are
    `LeanGaussian`s."""

    def best_evaluated_split_suggestion(self, criterion: Any, pre_split_dist: Any,
                                        att_idx: Hashable, binary_only: bool) -> BranchFactory:
        best = BranchFactory()
        candidates = self._split_point_suggestions()
        if not candidates:
            return best
        lows, highs = self._min_per_class, self._max_per_class
        classes = []
        for k, estimator in self._att_dist_per_class.items():
            var = estimator._var
            n = var.mean.n
            sigma = (var._S / (n - var.ddof) if n > var.ddof else 0.0) ** 0.5
            classes.append((k, n, var.mean._mean, sigma, lows[k], highs[k]))
        erf, root2 = math.erf, math.sqrt(2.0)
        info_gain = type(criterion) is InfoGainSplitCriterion
        if info_gain:
            min_frac = criterion.min_branch_fraction
            before = _entropy(pre_split_dist)
        for split_value in candidates:
            lhs: dict = {}
            rhs: dict = {}
            for k, n, mu, sigma, low, high in classes:
                if split_value < low:
                    rhs[k] = n
                elif split_value >= high:
                    lhs[k] = n
                else:  # River's Gaussian.cdf: 0 where the deviation is 0
                    cdf = 0.5 * (1.0 + erf((split_value - mu) / sigma / root2)) if sigma else 0.0
                    left = lhs[k] = cdf * n
                    rhs[k] = n - left
            post = [lhs, rhs]
            if info_gain:  # InfoGainSplitCriterion.merit_of_split, written out
                left, right = sum(lhs.values()), sum(rhs.values())
                total = left + right
                if total > 0 and (left / total > min_frac) + (right / total > min_frac) >= 2:
                    merit = before - (left * _entropy(lhs) + right * _entropy(rhs)) / total
                else:
                    merit = -math.inf
            else:
                merit = criterion.merit_of_split(pre_split_dist, post)
            if merit > best.merit:
                best = BranchFactory(merit, att_idx, split_value, post)
        return best


_GAUSSIAN = frozenset({GaussianSplitter, FastGaussianSplitter})


def _entropy(dist: dict) -> float:
    """River's `InfoGainSplitCriterion._compute_entropy_dict`, operation for operation."""
    entropy = 0.0
    total = 0.0
    log2 = math.log2
    for d in dist.values():
        if d > 0.0:
            entropy -= d * log2(d)
            total += d
    return (entropy + total * log2(total)) / total if total > 0.0 else 0.0


class GaussianTable:
    """A leaf's Gaussian observers as arrays: row c, column f holds class c's mean of feature f
    and its variance (as -2 x variance and half its log; NaN where River's log-density term is
    left out: no observer for the class, too few samples, or no variance). Only Gaussian
    splitters; the leaf's other features, if any, are added by the loop of `naive_bayes`."""

    def __init__(self, stats: dict, splitters: dict) -> None:
        self.classes: tuple[Hashable, ...] = tuple(stats)
        self.features = tuple(a for a, s in splitters.items() if type(s) in _GAUSSIAN)
        self.others = {a: s for a, s in splitters.items() if type(s) not in _GAUSSIAN}
        self.keys = tuple(splitters)
        self._source = splitters  # the leaf's dict of observers
        self.means = np.zeros((len(self.classes), len(self.features)))
        # -2 x variance and half the log of the variance: the constants of River's log-density
        # terms, kept as the observers change instead of computed again on every prediction
        self.denominators = np.zeros_like(self.means)
        self.half_logs = np.zeros_like(self.means)
        self._splitters = [splitters[a] for a in self.features]
        for row, c in enumerate(self.classes):
            self.refresh(row, c)

    def fits(self, stats: dict, splitters: dict | None) -> bool:
        """Whether it still describes the leaf: the same classes, and the same observers (River
        gives a leaf new, empty ones when it deactivates and activates it again)."""
        return (splitters is self._source and len(stats) == len(self.classes)
                and len(splitters) == len(self.keys) and tuple(splitters) == self.keys)

    def refresh(self, row: int, c: Hashable) -> None:
        """Read class `c`'s observers again (it has learned since)."""
        means, variances = self.means[row], self.denominators[row]
        for j, splitter in enumerate(self._splitters):
            dist = splitter._att_dist_per_class.get(c)
            variance = math.nan
            if dist is not None:
                var = dist._var
                n = var.mean.n
                if n > var.ddof:
                    v = var._S / (n - var.ddof)
                    if v > 0.0:
                        variance = v
                means[j] = var.mean._mean
            variances[j] = variance
        self.half_logs[row] = 0.5 * np.log(variances)
        variances *= -2.0

    def log_likelihoods(self, x: dict, stats: dict, total_weight: float) -> dict:
        """River's per-class votes, the Gaussian terms summed by numpy."""
        features = self.features
        values = np.fromiter((x.get(a, math.nan) for a in features), float, len(features))
        d = values - self.means
        terms = d * d / self.denominators - _HALF_LOG_TAU - self.half_logs
        terms[np.isnan(terms)] = 0.0  # a missing value or a left-out term (np.nansum's way)
        sums = terms.sum(axis=1).tolist()
        log = math.log
        votes: dict = {}
        for c, s in zip(self.classes, sums, strict=True):
            weight = stats[c]
            votes[c] = log(weight / total_weight) + s if weight > 0 else 0.0
        if self.others:
            _add_other_terms(votes, x, stats, self.others)
        return votes


def _add_other_terms(votes: dict, x: dict, stats: dict, splitters: dict) -> None:
    log = math.log
    for att, source in splitters.items():
        if att not in x:
            continue
        value = x[att]
        for c in votes:
            if stats[c] <= 0:
                continue
            log_proba = getattr(source, "cond_log_proba", None)
            if log_proba is not None:
                log_p = log_proba(value, c)
                if log_p > -math.inf:
                    votes[c] += log_p
            else:
                p = source.cond_proba(value, c)
                votes[c] += log(p) if p > 0 else 0.0


def _normalised(votes: dict) -> dict:
    max_ll = max(votes.values())
    lse = max_ll + math.log(sum(math.exp(v - max_ll) for v in votes.values()))
    return {c: math.exp(v - lse) for c, v in votes.items()}


def ordered_classes(classes: Any) -> list:
    """The classes sorted, as River's trees list them; labels of several types (1 and "x"), which
    Python cannot sort, by type name, then their text."""
    try:
        return sorted(classes)
    except TypeError:
        return sorted(classes, key=lambda c: (type(c).__name__, repr(c)))


class SeenValues(dict):
    """A set of a feature's values that iterates in the order the values came. River's nominal
    splitter keeps a `set`, through which it looks for the best one-value split: a set of
    strings iterates in an order that changes with each process's hash seed, so a tie between
    two values' splits was broken one way in a run and another way in the next, or in a service
    restarted from its checkpoint."""

    def add(self, value: Hashable) -> None:
        self[value] = None


class AnyLabelsNominalSplitter(NominalSplitterClassif):
    """River's nominal splitter, its multiway split's class distributions ordered by
    `ordered_classes` (River sorts them, which raises on labels of several types), its values
    in the order they came (`SeenValues`)."""

    def __init__(self) -> None:
        super().__init__()
        self._att_values = SeenValues()  # type: ignore[assignment]  # a set to River

    def _class_dist_from_multiway_split(self) -> list[dict]:
        resulting_dist: dict = {}
        for class_val, att_dist in self._att_dist_per_class.items():
            for att_val, weight in att_dist.items():
                dist = resulting_dist.setdefault(att_val, {})
                dist[class_val] = dist.get(class_val, 0.0) + weight
        return [{c: resulting_dist[k][c] for c in ordered_classes(resulting_dist[k])}
                for k in sorted(resulting_dist)]


class FastObservers:
    """Mixed into a River Hoeffding tree leaf: its Gaussian observers learn through
    `update_splitters` below; its nominal ones take labels of any types."""

    @staticmethod
    def new_nominal_splitter() -> NominalSplitterClassif:
        return AnyLabelsNominalSplitter()

    def update_splitters(self, x: dict, y: Any, w: float, nominal_attributes: Any) -> None:
        """River's `Leaf.update_splitters`, with a Gaussian splitter's update (four method calls
        down to `stats.Mean`) written out: the same operations in the same order, so the same
        numbers to the last bit, at about a third of the cost per feature. A new feature's
        splitter is made directly instead of by River's `clone`, which inspects signatures. A
        value whose update would overflow an observer (near the float limit) is not learned
        by it: River's would hold an infinite variance, then NaN probabilities."""
        splitters: dict = self.splitters  # type: ignore[attr-defined]
        disabled = self._disabled_attrs  # type: ignore[attr-defined]
        for att, value in x.items():
            if att in disabled:
                continue
            splitter = splitters.get(att)
            if splitter is None:
                if (nominal_attributes is not None and att in nominal_attributes) or not isinstance(
                        value, numbers.Number):
                    splitter = self.new_nominal_splitter()
                elif type(self.splitter) is FastGaussianSplitter:  # type: ignore[attr-defined]
                    splitter = FastGaussianSplitter(self.splitter.n_splits)  # type: ignore[attr-defined]
                else:
                    splitter = self.splitter.clone()  # type: ignore[attr-defined]
                splitters[att] = splitter
            if type(splitter) is not FastGaussianSplitter or value is None:
                splitter.update(value, y, w)
                continue
            dist = splitter._att_dist_per_class.get(y)
            if dist is None:  # GaussianSplitter.update's first value of a class
                splitter.update(value, y, w)
                continue
            var = dist._var  # Gaussian.update -> Var.update -> Mean.update
            mean = var.mean
            old = mean._mean
            n = mean.n + w
            new = old + (w / n) * (value - old)
            spread = var._S + w * (value - old) * (value - new)
            if spread - spread:  # inf or NaN (a value near the float limit): not learned
                continue
            mean.n, mean._mean, var._S = n, new, spread
            lows, highs = splitter._min_per_class, splitter._max_per_class
            if value < lows[y]:
                lows[y] = value
            if value > highs[y]:
                highs[y] = value


class TabledNaiveBayes(FastObservers):
    """Mixed into a naive Bayes leaf: its predictions through a `GaussianTable` when the leaf
    has many classes and features, through `naive_bayes` otherwise."""

    _nb_table: GaussianTable | None = None

    def _table_prediction(self, x: dict, total_weight: float | None = None) -> dict:
        """`total_weight`: the leaf's, if the caller has it (the sum of its class weights)."""
        stats: dict = self.stats  # type: ignore[attr-defined]
        splitters: dict = self.splitters  # type: ignore[attr-defined]
        if len(stats) * len(splitters) < TABLE_FROM:
            return naive_bayes(x, stats, splitters)
        if total_weight is None:
            total_weight = sum(stats.values())
        if total_weight == 0:
            return {}
        table = self._nb_table
        if table is None or not table.fits(stats, splitters):
            table = self._nb_table = GaussianTable(stats, splitters)
        return _normalised(table.log_likelihoods(x, stats, total_weight))

    def _majority(self) -> dict:
        """River's majority-class prediction, `normalize_values_in_dict(stats, inplace=False)`,
        without its deep copy of the class weights (which cost more than the rest): the same
        operations, so the same numbers."""
        stats: dict = self.stats  # type: ignore[attr-defined]
        factor = sum(stats.values())
        if factor == 0 or math.isnan(factor):
            return dict(stats)
        multiplier = 1 / factor
        return {c: v * multiplier for c, v in stats.items()}

    def _learned(self, y: Hashable) -> None:
        """After the leaf learned an event of class `y`: its row of the table is stale."""
        table = self._nb_table
        if table is not None:
            stats, splitters = self.stats, self.splitters  # type: ignore[attr-defined]
            if y in table.classes and table.fits(stats, splitters):
                table.refresh(table.classes.index(y), y)
            else:
                self._nb_table = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_nb_table", None)  # made again from the observers
        state.pop("_nb_last", None)  # an event's dict, not state
        return state


class FastLeafMajorityClass(FastObservers, LeafMajorityClass):
    """River's `LeafMajorityClass`, its observers learning through `FastObservers`."""


class FastLeafNaiveBayes(TabledNaiveBayes, LeafNaiveBayes):
    """River's `LeafNaiveBayes` with `naive_bayes` or a `GaussianTable`."""

    def learn_one(self, x: dict, y: Any, *, w: float = 1.0, tree: Any = None) -> None:
        super().learn_one(x, y, w=w, tree=tree)
        self._learned(y)

    def prediction(self, x: dict, *, tree: Any = None) -> dict:
        if self.is_active() and self.total_weight >= tree.nb_threshold:
            return self._table_prediction(x)
        return self._majority()


class FastLeafNaiveBayesAdaptive(TabledNaiveBayes, LeafNaiveBayesAdaptive):
    """River's `LeafNaiveBayesAdaptive` with `naive_bayes` or a `GaussianTable`.

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
        proba = self._table_prediction(x, total)
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
        self._learned(y)

    def prediction(self, x: dict, *, tree: Any = None) -> dict:
        if self.is_active() and self._nb_correct_weight >= self._mc_correct_weight:
            return dict(self._naive_bayes(x))  # a copy: the caller may change it
        return self._majority()


class CachedWeight:
    """Mixed into a River branch: its `total_weight`, which River sums over the whole subtree on
    every call, and its `most_common_path`, kept until an event is learned below it
    (`FastLeaves.learn_one` forgets them).

    River asks for it whenever an event lacks the feature a branch tests (and, for a multiway
    branch, has a value no branch holds): the event follows the child of the largest weight.
    With missing values that is a walk over the whole subtree at every branch on the way, each
    time; on a stream with 40 % of its cells empty, most of a Hoeffding tree's cost. The kept sum
    is the one River computes from the same leaves: the same path to the last bit.
    """

    _weight: float | None = None
    _common: tuple[int, Any] | None = None  # most_common_path(), kept the same way

    @property
    def total_weight(self) -> float:
        weight = self._weight
        if weight is None:
            weight = self._weight = sum(
                child.total_weight for child in filter(None, self.children))  # type: ignore[attr-defined]
        return weight

    def most_common_path(self) -> tuple[int, Any]:
        common = self._common
        if common is None:
            common = self._common = super().most_common_path()  # type: ignore[misc]
        return common

    def forget(self) -> None:
        """An event was learned below: the kept weight and path are stale."""
        self._weight = self._common = None


class CachedNumericBinaryBranch(CachedWeight, NumericBinaryBranch):
    pass


class CachedNominalBinaryBranch(CachedWeight, NominalBinaryBranch):
    pass


class CachedNumericMultiwayBranch(CachedWeight, NumericMultiwayBranch):
    pass


class CachedNominalMultiwayBranch(CachedWeight, NominalMultiwayBranch):
    pass


_CACHED: dict[type, type] = {
    NumericBinaryBranch: CachedNumericBinaryBranch,
    NominalBinaryBranch: CachedNominalBinaryBranch,
    NumericMultiwayBranch: CachedNumericMultiwayBranch,
    NominalMultiwayBranch: CachedNominalMultiwayBranch,
}


class FastLeaves:
    """Mixed into River's `HoeffdingTreeClassifier`: its leaves are the above, its
    numeric features' splitters `FastGaussianSplitter`, and its branches keep their weights
    (`CachedWeight`)."""

    def _branch_selector(self, numerical_feature: bool = True, multiway_split: bool = False
                         ) -> type:
        chosen = super()._branch_selector(numerical_feature, multiway_split)  # type: ignore[misc]
        return _CACHED.get(chosen, chosen)

    def learn_one(self, x: dict, y: Any, *, w: float = 1.0) -> None:
        # The branches the event passes (as River's learn_one walks), found before it is learned:
        # their kept weights are stale once it is.
        path: list[Any] = []
        node = self._root  # type: ignore[attr-defined]
        while isinstance(node, DTBranch):
            path.append(node)
            try:
                node = node.next(x)
            except KeyError:
                if node.max_branches() == -1 and node.feature in x:
                    break  # a value no branch holds: River adds a branch for it here
                node = node.most_common_path()[1]  # the feature is missing
        super().learn_one(x, y, w=w)  # type: ignore[misc]
        for branch in path:
            if isinstance(branch, CachedWeight):
                branch.forget()

    def _new_leaf(self, initial_stats: dict | None = None, parent: Any = None) -> Any:
        leaf = super()._new_leaf(initial_stats, parent)  # type: ignore[misc]
        if type(leaf.splitter) is GaussianSplitter:  # the template each feature's is cloned from
            leaf.splitter = FastGaussianSplitter(leaf.splitter.n_splits)
        kind = type(leaf)
        if kind is LeafNaiveBayesAdaptive:
            leaf.__class__ = FastLeafNaiveBayesAdaptive
        elif kind is LeafNaiveBayes:
            leaf.__class__ = FastLeafNaiveBayes
        elif kind is LeafMajorityClass:
            leaf.__class__ = FastLeafMajorityClass
        return leaf
