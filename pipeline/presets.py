"""Model presets and custom factories, resolved into fresh River classifiers.

Every preset takes any classification stream: binary or multiclass labels of any hashable type
(the label set is discovered as the stream goes), numeric, boolean and string features, and
missing features. Linear models are River's, made multiclass by `OneVsRest` (one binary model
while the stream is binary, River's one-vs-rest from the third class on, its models stacked in
one matrix by `pipeline.stacked`)
behind `TypedScaler` (numbers scaled, strings one-hot encoded); trees and
forests read strings natively as nominal features, behind `TreeStrings` so that a feature whose
type changes from one event to the next cannot break them.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from collections.abc import Callable
from typing import Any

from river import (
    compose,
    dummy,
    forest,
    linear_model,
    multiclass,
    naive_bayes,
    preprocessing,
    tree,
)
from river.forest.adaptive_random_forest import BaseTreeClassifier
from river.tree.base import Branch
from river.tree.nodes.branch import DTBranch

from pipeline.leaves import (
    AnyLabelsNominalSplitter,
    FastLeaves,
    LeanGaussianSplitter,
    ordered_classes,
)
from pipeline.neighbors import WindowKNN
from pipeline.onevsrest import OneVsRest, Scaled
from pipeline.preprocessing import TreeStrings
from pipeline.stacked import LogisticRegression, PassiveAggressive

# node class -> whether it is a branch: isinstance() against River's abstract node classes costs
# as much as the rest of a step down the tree
_IS_BRANCH: dict[type, bool] = {}


class FastHoeffdingTree(FastLeaves, tree.HoeffdingTreeClassifier):
    """River's Hoeffding tree with majority-class leaves, predicting without River's overhead.

    Its leaves, splitters and branches are `pipeline.leaves`' (`FastLeaves`): River's numbers
    to the last bit, at a fraction of the cost of learning (split attempts above all).

    `predict_proba_one` gives the class frequencies of the leaf that `x` reaches (a missing
    feature follows the most travelled branch), as `HoeffdingTreeClassifier` does with
    ``leaf_prediction="mc"``, but walks down the tree in a loop instead of nested generators and
    does not sort the class set on every call: less than half the cost. Classes the leaf has
    not seen are left out (River lists them with 0), so ties may break differently.

    Examples
    --------
    >>> model = FastHoeffdingTree()
    >>> for i in range(300):
    ...     model.learn_one({"a": i % 2}, "odd" if i % 2 else "even")
    >>> model.predict_one({"a": 1})
    'odd'
    """

    def __init__(self, grace_period: int = 100, delta: float = 1e-3,
                 binary_split: bool = False) -> None:
        super().__init__(grace_period=grace_period, delta=delta, leaf_prediction="mc",
                         binary_split=binary_split)

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        node: Any = self._root
        if node is None:
            return {}
        while True:
            kind = type(node)
            is_branch = _IS_BRANCH.get(kind)
            if is_branch is None:
                is_branch = _IS_BRANCH[kind] = isinstance(node, Branch)
            if not is_branch:
                break
            try:
                node = node.next(x)
            except KeyError:  # the split feature is missing: the most travelled branch
                node = node.most_common_path()[1]
        stats = node.stats
        total = sum(stats.values())
        return {c: n / total for c, n in stats.items()} if total else {}


class TagStrings:
    """Mixed into a River tree or forest: its input goes through `TreeStrings` first (strings
    tagged, at most `TREE_MAX_VALUES` values a feature told apart). (A mixin rather than a
    `compose.Pipeline` step: River's pipeline costs about 20 µs per `learn_one`, almost half of
    a Hoeffding tree's own.)"""

    _strings: TreeStrings | None = None  # None: made at the first event (older checkpoints too)

    def _tree_strings(self) -> TreeStrings:
        strings = self._strings
        if strings is None:
            strings = self._strings = TreeStrings()
        return strings

    def learn_one(self, x: dict, y: Any, **kwargs: Any) -> Any:
        return super().learn_one(self._tree_strings().learned(x), y, **kwargs)  # type: ignore[misc]

    def predict_proba_one(self, x: dict, **kwargs: Any) -> Any:
        return super().predict_proba_one(  # type: ignore[misc]
            self._tree_strings().predicted(x), **kwargs)


class AnyLabels:
    """Mixed into a River Hoeffding tree: River's `predict_proba_one`, its classes listed by
    `ordered_classes`. River sorts them, which raises on a stream with labels of several types:
    the tree failed on every event from the second type on."""

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        proba = {c: 0.0 for c in ordered_classes(self.classes)}  # type: ignore[attr-defined]
        root: Any = self._root  # type: ignore[attr-defined]
        if root is not None:
            leaf: Any = root.traverse(x, until_leaf=True) if isinstance(root, DTBranch) else root
            proba.update(leaf.prediction(x, tree=self))
        return proba


def any_labels_leaf(leaf: Any) -> Any:
    """`leaf` (River's) with nominal splitters that take labels of any types: River's sort their
    classes (`pipeline.leaves.AnyLabelsNominalSplitter`)."""
    leaf.new_nominal_splitter = AnyLabelsNominalSplitter  # over the class's static method
    return leaf


class AnyLabelsLeaves:
    """Mixed into a River tree whose leaves are River's own: each through `any_labels_leaf`."""

    def _new_leaf(self, initial_stats: dict | None = None, parent: Any = None) -> Any:
        return any_labels_leaf(super()._new_leaf(initial_stats, parent))  # type: ignore[misc]


class ForestTree(BaseTreeClassifier):
    """River's tree of an adaptive random forest, listing its classes as `AnyLabels` does, its
    leaves through `any_labels_leaf`. (Methods of its own, not the mixins: `AdaptiveRandomForest`
    changes a tree's class in place, which Python allows only to a class of the same layout.)"""

    predict_proba_one = AnyLabels.predict_proba_one

    def _new_leaf(self, initial_stats: dict | None = None, parent: Any = None) -> Any:
        return any_labels_leaf(super()._new_leaf(initial_stats, parent))


class HoeffdingTree(TagStrings, AnyLabels, FastLeaves, tree.HoeffdingTreeClassifier):
    """River's `HoeffdingTreeClassifier`, its input through `TreeStrings`, its naive Bayes
    leaves computed by `pipeline.leaves` (the same numbers, a fraction of the cost)."""


class HoeffdingAdaptiveTree(TagStrings, AnyLabelsLeaves, tree.HoeffdingAdaptiveTreeClassifier):
    """River's `HoeffdingAdaptiveTreeClassifier`, its input through `TreeStrings`."""


class AdaptiveRandomForest(TagStrings, forest.ARFClassifier):
    """River's `ARFClassifier`, its input through `TreeStrings`, its trees through `AnyLabels`."""

    def _new_base_model(self) -> Any:
        model = super()._new_base_model()
        model.__class__ = ForestTree  # River's tree, but for how it lists its classes
        return model


class TaggedFastHoeffdingTree(TagStrings, FastHoeffdingTree):
    """`FastHoeffdingTree`, its input through `TreeStrings`."""


# Each preset named after a River estimator is that estimator with its defaults; the randomised
# ones get a fixed seed so that a replay from a checkpoint (or a second run) gives the very same
# numbers. driftline's own: `hoeffding_tree_fast` attempts a split every 100 samples instead of
# 200, at a split confidence of 1e-3 instead of 1e-7 (it grows sooner), and predicts the
# majority class of a leaf instead of adaptive naive Bayes, for less than half the cost per
# event; `hoeffding_tree_quick` (the default set's tree) and `knn` are described below.
PRESETS: dict[str, Callable[[], Any]] = {
    "logistic_regression": lambda: Scaled(OneVsRest(LogisticRegression())),
    "passive_aggressive": lambda: Scaled(OneVsRest(PassiveAggressive())),
    "softmax_regression": lambda: Scaled(linear_model.SoftmaxRegression()),
    "hoeffding_tree": lambda: HoeffdingTree(),
    "hoeffding_tree_fast": lambda: TaggedFastHoeffdingTree(binary_split=True),
    # River's splitter, but for Gaussians without a random generator each (the same numbers,
    # checkpoints a fraction of the size: pipeline.leaves.LeanGaussian)
    "hoeffding_adaptive_tree": lambda: HoeffdingAdaptiveTree(seed=1,
                                                             splitter=LeanGaussianSplitter()),
    "adaptive_random_forest": lambda: AdaptiveRandomForest(seed=1,
                                                           splitter=LeanGaussianSplitter()),
    # Gaussian naive Bayes needs the zeros of one-hot encoding (an absent feature is not a 0 to
    # it): River's encoder keeps them.
    "gaussian_nb": lambda: (
        compose.TransformerUnion(
            compose.SelectType(numbers.Number),
            compose.SelectType(str) | preprocessing.OneHotEncoder(),
        )
        | naive_bayes.GaussianNB()
    ),
    "no_change": lambda: dummy.NoChangeClassifier(),
    # driftline's: k nearest neighbours over the last 1,000 samples, numpy distances
    # (pipeline/neighbors.py says why not River's KNNClassifier).
    "knn": lambda: Scaled(WindowKNN(k=5, window=1000)),
    # A Hoeffding tree that grows quickly: a split attempt every 50 samples at a confidence of
    # 0.1, adaptive naive Bayes leaves (River's default leaves). At 0.01 (before) it split later:
    # behind River's leveraging bagging on rule and tree concepts (docs/drift.md, "The tree's
    # confidence"). driftline's two trees split a string feature on one value against the rest
    # (`binary_split`), never a branch per value: STAGGER 0.922 -> 0.969 (this tree alone), and
    # an identifier among the features cannot win a split (docs/drift.md, "String features in
    # trees").
    "hoeffding_tree_quick": lambda: HoeffdingTree(grace_period=50, delta=0.1, binary_split=True),
}


class FactoryError(ValueError):
    """A custom model factory that cannot be loaded, raises, or returns no classifier."""


def build_model(spec: str) -> Any:
    """A fresh classifier for `spec`: a preset name or "package.module:factory".

    Raises `LookupError` for an unknown preset and `FactoryError` for a factory that cannot be
    imported (a syntax error in its module included), raises, or returns no River classifier.
    """
    if spec in PRESETS:
        return PRESETS[spec]()
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise LookupError(
            f"unknown preset {spec!r}; presets: {', '.join(PRESETS)}, "
            "or 'package.module:factory' for a custom River classifier"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # ImportError, AttributeError, and any error of the module's code
        raise FactoryError(f"cannot load factory {spec!r}: {type(exc).__name__}: {exc}") from None
    try:
        model = factory()
    except Exception as exc:
        raise FactoryError(f"factory {spec!r} raised {exc!r}") from None
    if not (callable(getattr(model, "predict_one", None)) and callable(
        getattr(model, "learn_one", None)
    )):
        raise FactoryError(
            f"factory {spec!r} returned {type(model).__name__}, "
            "not a River classifier (predict_one and learn_one)"
        )
    return model


def accepts_weight(model: Any) -> bool:
    """Whether `model.learn_one` takes a sample weight `w` (for a pipeline: its last step; for
    a one-vs-rest wrapper: the classifier it wraps)."""
    if isinstance(model, compose.Pipeline):
        model = list(model.steps.values())[-1]
    if isinstance(model, Scaled):
        model = model.classifier
    if isinstance(model, multiclass.OneVsRestClassifier | OneVsRest):
        model = model.classifier
    learn_one = super(TagStrings, model).learn_one if isinstance(model, TagStrings) else (  # type: ignore[misc]
        model.learn_one
    )
    try:
        return "w" in inspect.signature(learn_one).parameters
    except (TypeError, ValueError):
        return False
