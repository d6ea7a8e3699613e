"""Model presets and custom factories, resolved into fresh River estimators."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from river import compose, dummy, forest, linear_model, naive_bayes, preprocessing, tree
from river.tree.base import Branch

from driftline.errors import ConfigError

# node class -> whether it is a branch: isinstance() against River's abstract node classes costs
# as much as the rest of a step down the tree
_IS_BRANCH: dict[type, bool] = {}


class FastHoeffdingTree(tree.HoeffdingTreeClassifier):
    """River's Hoeffding tree with majority-class leaves, predicting without River's overhead.

    `predict_one` gives the very predictions of `HoeffdingTreeClassifier.predict_one` (the most
    frequent class of the leaf that `x` reaches; a missing feature follows the most travelled
    branch), but walks down the tree in a loop instead of nested generators and takes the
    largest class count as it is instead of from a normalised copy: less than half the cost.
    """

    def __init__(self, grace_period: int = 100, delta: float = 1e-3) -> None:
        super().__init__(grace_period=grace_period, delta=delta, leaf_prediction="mc")

    def predict_one(self, x: dict, **kwargs: Any) -> Any:
        proba = dict.fromkeys(sorted(self.classes), 0.0)
        node: Any = self._root
        if node is not None:
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
            proba.update(node.stats)
        return max(proba, key=proba.__getitem__) if proba else None


# Each preset is River's estimator with its defaults; the randomised ones get a fixed seed so
# that a replay from a checkpoint (or a second run) gives the very same numbers. The one
# exception, `hoeffding_tree_fast`, is the Hoeffding tree of the default model set: it attempts
# a split every 100 samples instead of 200, at a split confidence of 1e-3 instead of 1e-7 (it
# grows sooner), and predicts the majority class of a leaf instead of adaptive naive Bayes, for
# less than half the cost per event (chosen with benchmarks/drift.py, see docs/drift.md).
PRESETS: dict[str, Callable[[], Any]] = {
    "logistic_regression": lambda: (
        preprocessing.StandardScaler() | linear_model.LogisticRegression()
    ),
    "passive_aggressive": lambda: preprocessing.StandardScaler() | linear_model.PAClassifier(),
    "hoeffding_tree": lambda: tree.HoeffdingTreeClassifier(),
    "hoeffding_tree_fast": FastHoeffdingTree,
    "hoeffding_adaptive_tree": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=1),
    "adaptive_random_forest": lambda: forest.ARFClassifier(seed=1),
    "gaussian_nb": lambda: naive_bayes.GaussianNB(),
    "no_change": lambda: dummy.NoChangeClassifier(),
}


def build_model(spec: str, key: str) -> Any:
    """A fresh estimator for `spec`: a preset name or "package.module:factory".

    `key` names the configuration key in error messages.
    """
    if spec in PRESETS:
        return PRESETS[spec]()
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ConfigError(
            f"{key}: unknown preset {spec!r}; presets: {', '.join(PRESETS)}, "
            "or 'package.module:factory' for a custom River estimator"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}: cannot load factory {spec!r}: {exc}") from None
    try:
        model = factory()
    except Exception as exc:
        raise ConfigError(f"{key}: factory {spec!r} raised {exc!r}") from None
    if not (callable(getattr(model, "predict_one", None)) and callable(
        getattr(model, "learn_one", None)
    )):
        raise ConfigError(
            f"{key}: factory {spec!r} returned {type(model).__name__}, "
            "not a River classifier (predict_one and learn_one)"
        )
    return model


def accepts_weight(model: Any) -> bool:
    """Whether `model.learn_one` takes a sample weight `w` (for a pipeline: its last step)."""
    if isinstance(model, compose.Pipeline):
        model = list(model.steps.values())[-1]
    try:
        return "w" in inspect.signature(model.learn_one).parameters
    except (TypeError, ValueError):
        return False
