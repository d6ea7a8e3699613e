"""Model presets and custom factories, resolved into fresh River estimators."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from river import compose, dummy, forest, linear_model, naive_bayes, preprocessing, tree

from driftline.errors import ConfigError

# Each preset is River's estimator with its defaults; the randomised ones get a fixed seed so
# that a replay from a checkpoint (or a second run) gives the very same numbers.
PRESETS: dict[str, Callable[[], Any]] = {
    "logistic_regression": lambda: (
        preprocessing.StandardScaler() | linear_model.LogisticRegression()
    ),
    "hoeffding_tree": lambda: tree.HoeffdingTreeClassifier(),
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
