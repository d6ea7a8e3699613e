"""One-vs-rest that costs one model on a binary stream, and a scaler without River's pipeline.

River's `multiclass.OneVsRestClassifier` keeps a binary model per class, so on a binary stream
it trains two models where one would do: the linear presets cost twice what River's binary
`LogisticRegression` or `PAClassifier` costs there, and most streams are binary. `OneVsRest`
keeps one binary model while at most two classes have been seen, and becomes a one-vs-rest
when a third class arrives: `StackedOneVsRest` (River's models in one matrix) for River's
logistic regression and passive-aggressive classifier, River's `OneVsRestClassifier` for any
other binary model.

`Scaled` puts `TypedScaler` in front of a classifier: River's ``TypedScaler() | model`` does the
same, but its pipeline machinery costs about 20 µs per event, more than a binary linear model.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Hashable
from typing import Any

from river import base, multiclass

from pipeline.preprocessing import TypedScaler
from pipeline.stacked import StackedOneVsRest, stackable


def mirrored(model: Any) -> Any:
    """A copy of a binary linear model that predicts the other class: every weight and the
    intercept negated. For a symmetric loss (River's log and hinge losses) it is the model that
    would have learned ``not y`` from the same events. A model of another kind gives a fresh
    clone (it starts from nothing)."""
    twin = copy.deepcopy(model)
    if hasattr(twin, "_weights") and hasattr(twin, "intercept"):  # River's GLMs
        twin._weights = twin._weights * -1.0
        twin.intercept = -twin.intercept
    elif isinstance(getattr(twin, "weights", None), dict) and hasattr(twin, "intercept"):  # PA
        twin.weights = collections.defaultdict(float, {k: -v for k, v in twin.weights.items()})
        twin.intercept = -twin.intercept
    else:
        twin = model.clone()
    return twin


class OneVsRest(base.Classifier):
    """River's `OneVsRestClassifier`, with a single binary model while the stream is binary.

    The first class seen is the binary model's ``True``; the second its ``False``. When a third
    class arrives, the model becomes the first class's one-vs-rest model, its mirror image
    (`mirrored`) the second's, and the third gets a fresh clone, as River's would (stacked in
    one matrix when `pipeline.stacked.stackable`).

    Parameters
    ----------
    classifier
        A binary River classifier, cloned for each class.

    Examples
    --------
    >>> from river import linear_model
    >>> model = OneVsRest(linear_model.LogisticRegression())
    >>> for i in range(200):
    ...     model.learn_one({"a": i % 2}, "odd" if i % 2 else "even")
    >>> model.predict_one({"a": 1}), len(model.models)
    ('odd', 1)
    >>> for i in range(300):
    ...     model.learn_one({"a": i % 3}, "abc"[i % 3])
    >>> sorted(model.predict_proba_one({"a": 2})), len(model.models)
    (['a', 'b', 'c', 'even', 'odd'], 5)
    """

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.classes: list[Hashable] = []  # the first two classes, while binary
        self.binary: Any = None
        self.multi: Any = None  # River's OneVsRestClassifier, from the third class on

    @property
    def _multiclass(self) -> bool:
        return True

    @property
    def models(self) -> dict[Any, Any]:
        """Class -> its binary model while at most two classes were seen (the first class's
        model only) and for River's one-vs-rest; the stacked one has its rows instead."""
        if isinstance(self.multi, StackedOneVsRest):
            return {c: self.multi.weights[row] for c, row in self.multi.rows.items()}
        if self.multi is not None:
            return dict(self.multi.classifiers)
        return {self.classes[0]: self.binary} if self.classes else {}

    def learn_one(self, x: dict, y: Any, **kwargs: Any) -> None:
        if self.multi is None:
            classes = self.classes
            if y not in classes:
                if len(classes) == 2:
                    self._to_multiclass()
                    assert self.multi is not None
                    self.multi.learn_one(x, y, **kwargs)
                    return
                classes.append(y)
                if self.binary is None:
                    self.binary = self.classifier.clone()
            self.binary.learn_one(x, y == classes[0], **kwargs)
            return
        self.multi.learn_one(x, y, **kwargs)

    def _to_multiclass(self) -> None:
        first, second = self.classes
        multi: Any
        if stackable(self.classifier):  # the same models, in one matrix
            multi = StackedOneVsRest(self.classifier)
            weights, intercept = dict(self.binary.weights), float(self.binary.intercept)
            multi.add_class(first, weights, intercept)
            multi.add_class(second, {k: -v for k, v in weights.items()}, -intercept)
        else:
            multi = multiclass.OneVsRestClassifier(self.classifier)
            multi.classifiers = {first: self.binary, second: mirrored(self.binary)}
        self.multi, self.binary, self.classes = multi, None, []

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Any, float]:
        if self.multi is not None:
            return self.multi.predict_proba_one(x, **kwargs)
        classes = self.classes
        if len(classes) < 2:  # as River's: one class has all the probability
            return {classes[0]: 1.0} if classes else {}
        p = self.binary.predict_proba_one(x, **kwargs).get(True, 0.0)
        return {classes[0]: p, classes[1]: 1.0 - p}


class Scaled(base.Classifier):
    """``TypedScaler() | classifier`` without River's pipeline: the scaler learns each event
    before it is scaled for the classifier, as in River's pipeline.

    Parameters
    ----------
    classifier
        The River classifier that gets the scaled events.

    Examples
    --------
    >>> from river import linear_model
    >>> model = Scaled(linear_model.LogisticRegression())
    >>> for i in range(200):
    ...     model.learn_one({"t": 100.0 * (i % 2), "c": "ab"[i % 2]}, i % 2 == 1)
    >>> model.predict_one({"t": 100.0, "c": "b"})
    True
    """

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.scaler = TypedScaler()

    @property
    def _multiclass(self) -> bool:
        return bool(getattr(self.classifier, "_multiclass", False))

    def learn_one(self, x: dict, y: Any, **kwargs: Any) -> None:
        self.classifier.learn_one(self.scaler.learn_transform_one(x), y, **kwargs)

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Any, float]:
        return self.classifier.predict_proba_one(self.scaler.transform_one(x), **kwargs)
