"""River's one-vs-rest linear models, the per-class models stacked in one numpy matrix.

River's `multiclass.OneVsRestClassifier` over `LogisticRegression` or `PAClassifier` keeps a
binary model per class and runs each in Python, a cost that grows with the classes. Each
class's model is the same arithmetic on the same event, so `StackedOneVsRest` keeps their
weights as the rows of one matrix and does each step once for all classes: the same updates to
the same numbers (the tests hold it to River's probabilities at every event, to 1e-9). The
`logistic_regression` preset alone on 10,000 LEDDrift events (10 classes, 24 features, scaler
included, one run each on a busy machine): 2,590 events/s with River's one-vs-rest, 5,595
stacked; `passive_aggressive` 1,486 and 4,884. Any other binary classifier, or one of these
two with settings this module does not reproduce (an L1 or L2 penalty, another optimiser or
loss), stays with River's. `LogisticRegression` and `PassiveAggressive` are River's binary
models, computed with less overhead to the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
from river import base, linear_model, optim, utils


class PassiveAggressive(linear_model.PAClassifier):
    """River's `PAClassifier`, its squared norm of `x` computed as `np.linalg.norm` computes it
    (``sqrt(a.dot(a))`` over the values as floats) without that function's checks, which cost
    more than the rest of a step on a few features, and its dot product in a plain loop instead
    of a generator: the same numbers to the last bit."""

    @staticmethod
    def _squared_norm(x: dict) -> float:
        a = np.fromiter(x.values(), float, len(x))
        return float(np.sqrt(a.dot(a))) ** 2

    def _calc_tau_0(self, x: dict, loss: float) -> float:  # type: ignore[override]
        norm = self._squared_norm(x)
        return loss / norm if norm > 0 else 0

    def _calc_tau_1(self, x: dict, loss: float) -> float:
        norm = self._squared_norm(x)
        return min(self.C, loss / norm) if norm > 0 else 0

    def _calc_tau_2(self, x: dict, loss: float) -> float:
        return loss / (self._squared_norm(x) + 0.5 / self.C)

    def _dot(self, x: dict) -> float:
        """River's `utils.math.dot(x, self.weights)`: over the shorter of the two, in its order,
        added up one term after the other as `sum` does."""
        weights = self.weights
        total = 0
        if len(x) < len(weights):
            for i, xi in x.items():
                if i in weights:
                    total += xi * weights[i]
        else:
            for i, wi in weights.items():
                if i in x:
                    total += x[i] * wi
        return total

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        z = self._dot(x) + self.intercept
        p = utils.math.sigmoid(z)
        return {False: 1.0 - p, True: p}

    def learn_one(self, x: dict, y: Any) -> None:
        y_pred = self._dot(x) + self.intercept
        tau = self.calc_tau(x, self.loss(y, y_pred))
        step = tau * (y or -1)  # y == False becomes -1
        weights = self.weights
        for i, xi in x.items():
            weights[i] += step * xi
        if self.learn_intercept:
            self.intercept += step


class LogisticRegression(linear_model.LogisticRegression):
    """River's `LogisticRegression` with its weights in a plain dict, each step one loop over
    the event's features: the same numbers to the last bit (River's dot product runs over the
    event's features in their order, as here), at a fraction of the cost of River's vector
    type and optimiser calls on a few features. Settings this class does not reproduce (see
    `stackable`: an L1 or L2 penalty, another optimiser, loss or initialiser) run River's code.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain = _reproducible(self)
        if self._plain:
            self._weights = {}  # type: ignore[assignment]

    @property
    def weights(self) -> dict:
        return dict(self._weights) if self._plain else super().weights

    @property
    def _mutable_attributes(self) -> set:
        # The plain path was chosen from the settings at construction: none may change since.
        return set() if self._plain else super()._mutable_attributes

    def _dot(self, x: dict) -> float:
        weights = self._weights
        total = 0.0
        for name, value in x.items():
            w = weights.get(name)
            if w is not None:
                total += w * value
        return total + self.intercept

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        if not self._plain:
            return super().predict_proba_one(x)
        z = self._dot(x)
        p = utils.math.sigmoid(z)
        return {False: 1.0 - p, True: p}

    def learn_one(self, x: dict, y: Any, w: float = 1.0) -> None:
        if not self._plain:
            return super().learn_one(x, y, w)
        z = self._dot(x)
        # River's log loss gradient, then its weight and clip
        sign = -1 if y == 0 else int(y)
        margin = z * sign
        if margin > 18.0:
            g = math.exp(-margin) * -sign
        elif margin < -18.0:
            g = float(-sign)
        else:
            g = -sign / (math.exp(margin) + 1.0)
        g *= w
        clip = self.clip_gradient
        g = float(max(min(g, clip), -clip))
        optimizer = self.optimizer
        self.intercept -= self.intercept_lr.learning_rate * g
        rate = optimizer.lr.learning_rate
        weights = self._weights
        for name, value in x.items():  # River's learn mode adds a missing weight as 0 first
            weights[name] = weights.get(name, 0.0) - rate * (value * g)
        optimizer.n_iterations += 1


def _reproducible(model: Any) -> bool:
    loss, opt = model.loss, model.optimizer
    return (type(loss) is optim.losses.Log and loss.weight_pos == loss.weight_neg == 1.0
            and type(opt) is optim.SGD and type(opt.lr) is optim.schedulers.Constant
            and type(model.intercept_lr) is optim.schedulers.Constant
            and not model.l1 and not model.l2
            and type(model.initializer) is optim.initializers.Zeros)


def stackable(model: Any) -> bool:
    """Whether `StackedOneVsRest` reproduces a one-vs-rest of `model` (a binary template)."""
    if type(model) in (linear_model.PAClassifier, PassiveAggressive):
        return model.mode in (0, 1, 2)
    if type(model) not in (linear_model.LogisticRegression, LogisticRegression):
        return False
    return _reproducible(model)


class StackedOneVsRest(base.Classifier):
    """`multiclass.OneVsRestClassifier(template)` for a `LogisticRegression` or a
    `PAClassifier` (see `stackable`), with the models' weights as the rows of one matrix.

    A new class gets a fresh model (a row of zeros), which learns from the event that brought
    it, as River's clone would; a new feature gets a column of zeros.

    Examples
    --------
    >>> from river import linear_model
    >>> model = StackedOneVsRest(linear_model.LogisticRegression())
    >>> for i in range(300):
    ...     model.learn_one({"a": i % 3}, "abc"[i % 3])
    >>> model.predict_one({"a": 2}), len(model.classes)
    ('c', 3)
    """

    def __init__(self, classifier: Any) -> None:
        if not stackable(classifier):
            raise ValueError(f"{classifier!r} is not a model StackedOneVsRest reproduces")
        self.classifier = classifier
        self.pa = isinstance(classifier, linear_model.PAClassifier)
        self.classes: list[Hashable] = []
        self.rows: dict[Hashable, int] = {}
        self.columns: dict[Hashable, int] = {}
        self.names: list[Hashable] = []  # the features in column order
        self.weights = np.zeros((4, 8))  # rows: classes; columns: features; grown by doubling
        self.intercepts = np.zeros(4)

    @property
    def _multiclass(self) -> bool:
        return True

    # --- adopting binary models ---------------------------------------------------------------

    def add_class(self, label: Hashable, weights: dict | None = None,
                  intercept: float = 0.0) -> None:
        """A row for `label`: zeros (a fresh model), or a binary model's `weights`."""
        row = len(self.classes)
        if row == self.weights.shape[0]:
            self.weights = np.vstack([self.weights, np.zeros_like(self.weights)])
            self.intercepts = np.concatenate([self.intercepts, np.zeros_like(self.intercepts)])
        self.classes.append(label)
        self.rows[label] = row
        self.intercepts[row] = intercept
        for name, value in (weights or {}).items():
            j = self._column(name)  # first: it may grow the matrix
            self.weights[row, j] = value

    def _column(self, name: Hashable) -> int:
        j = self.columns.get(name)
        if j is None:
            j = self.columns[name] = len(self.names)
            self.names.append(name)
            if j == self.weights.shape[1]:
                self.weights = np.hstack([self.weights, np.zeros_like(self.weights)])
        return j

    # --- the models ---------------------------------------------------------------------------

    def _vector(self, x: dict, learning: bool) -> np.ndarray:
        """`x` as a row over the known features (a missing one is 0: it adds nothing to a dot
        product and gets no update, as in River's sparse arithmetic)."""
        names = self.names
        if list(x) == names:  # the common case: every feature, in the order first seen
            return np.fromiter(x.values(), float, len(names))
        columns = self.columns
        if learning:
            for name in x:
                if name not in columns:
                    self._column(name)
        v = np.zeros(len(names))
        for name, value in x.items():
            j = columns.get(name)
            if j is not None:
                v[j] = value
        return v

    def _raw(self, v: np.ndarray) -> np.ndarray:
        k = len(self.classes)
        return self.weights[:k, :len(v)] @ v + self.intercepts[:k]

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Any, float]:
        if not self.classes:
            return {}
        # The per-class steps in Python floats: for tens of classes that costs less than the
        # numpy calls it would take, and it is River's sigmoid, math.exp and its cut-offs.
        exp = math.exp
        p = [0.0 if z < -30.0 else 1.0 if z > 30.0 else 1.0 / (1.0 + exp(-z))
             for z in self._raw(self._vector(x, learning=False)).tolist()]
        total = sum(p)
        if not total:
            return {c: 1.0 / len(self.classes) for c in self.classes}
        return {c: q / total for c, q in zip(self.classes, p, strict=True)}

    def learn_one(self, x: dict, y: Hashable, w: float = 1.0) -> None:
        if y not in self.rows:
            self.add_class(y)
        v = self._vector(x, learning=True)
        # Each class's step in Python floats, then one numpy update of the rows
        z = self._raw(v).tolist()
        target = self.rows[y]
        if self.pa:
            self._learn_pa(v, z, target)
        else:
            self._learn_log(v, z, target, w)

    def _learn_log(self, v: np.ndarray, z: list[float], target: int, w: float) -> None:
        model = self.classifier
        # The log loss's gradient. River's switches to its limits beyond |z| = 18, where the
        # two differ by less than 1e-7 of the gradient: no probability moves by 1e-9 (tested).
        clip = model.clip_gradient
        exp = math.exp
        gradient = []
        for row, zr in enumerate(z):
            t = 1.0 if row == target else -1.0
            g = -t / (exp(min(zr * t, 700.0)) + 1.0) * w  # exp(700) is still finite
            gradient.append(g if clip >= abs(g) else clip if g > 0 else -clip)
        g_ = np.array(gradient)
        k = len(gradient)
        self.intercepts[:k] -= model.intercept_lr.learning_rate * g_
        self.weights[:k, :len(v)] -= model.optimizer.lr.learning_rate * (g_[:, None] * v)

    def _learn_pa(self, v: np.ndarray, z: list[float], target: int) -> None:
        model = self.classifier
        squared = float(v @ v)  # River's squared norm of x (its missing features are 0 here)
        mode, C = model.mode, model.C
        if mode != 2 and squared <= 0:
            return  # tau is 0: nothing changes
        step = []
        for row, zr in enumerate(z):  # the hinge loss, River's tau for the mode, the step
            t = 1.0 if row == target else -1.0
            loss = max(1.0 - t * zr, 0.0)
            if mode == 2:
                tau = loss / (squared + 0.5 / C)
            else:
                tau = loss / squared if mode == 0 else min(C, loss / squared)
            step.append(tau * t)
        steps = np.array(step)
        k = len(step)
        self.weights[:k, :len(v)] += steps[:, None] * v
        if model.learn_intercept:
            self.intercepts[:k] += steps
