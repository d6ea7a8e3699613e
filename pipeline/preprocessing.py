"""Feature preprocessing that lets every model take numbers, booleans and strings alike.

River's own composition of the same thing, ``(compose.SelectType((numbers.Number,)) |
preprocessing.StandardScaler()) + (compose.SelectType((str,)) | preprocessing.OneHotEncoder())``,
costs about 50 µs per event and member on Elec2's 8 features (measured: it took the logistic
regression preset from 17,500 to 10,000 events/s), more than the linear model it feeds.
`TypedScaler` does the same in one pass at a tenth of the cost. On numbers alone it is River's
`StandardScaler` to the last bit (same update and transform arithmetic), which the tests check,
except for outliers and values near the float limit (see `CLIP` and `LARGEST`).
"""

from __future__ import annotations

import math
from typing import Any

from river import base

# Outliers: once a feature has `WARMUP` values, a value more than `CLIP` deviations from its
# mean is learned and scaled as if it were `CLIP` deviations away. River's scaler takes it
# whole: one value of 1e6 in a feature of deviation 0.1 multiplies its variance by a million for
# good, so the feature scales to about 0 from then on, and a linear model's weight takes one
# step a million times too long (two such values in Elec2: the default set 0.914 -> 0.868).
# Normal data is never that far out (ten deviations: under 1 in 1e23 for a Gaussian).
CLIP = 10.0
WARMUP = 100
# Strings: the first `MAX_VALUES` values of a feature get an indicator each (``f=v``); any
# other value, and a value not learned yet, the feature's shared one, ``(f, OTHER)`` (a tuple: no
# string value can take its name). An identifier in the events (a user, a session, a UUID)
# would otherwise add a weight per event to every linear model, for good.
MAX_VALUES = 1000
OTHER = "*"
# A number beyond this is not learned at all: the square of its distance to the mean could
# overflow a float (infinite, then NaN statistics). Scaled, it is CLIP deviations out.
LARGEST = 1e150
_INF = math.inf


class TypedScaler(base.Transformer):
    """Standard-scales numbers and booleans; one-hot encodes strings.

    A number (or boolean, as 0/1) under feature ``f`` is scaled with ``f``'s running mean and
    variance, exactly as River's `preprocessing.StandardScaler`, with two exceptions. After
    `WARMUP` values, one more than `CLIP` deviations from the mean counts as that far (see
    `CLIP`). A value beyond ±`LARGEST` (such as 1e308) is not learned, and scales to ±`CLIP`:
    River's would make the statistics infinite, then NaN, and every later scaled event with
    them.

    A string ``v`` under ``f`` becomes the indicator ``f=v`` with value 1, and the other values
    of ``f`` are left out: 0 to a linear model (River's `OneHotEncoder` with
    ``drop_zeros=True``). Only the first `MAX_VALUES` values of a feature have an indicator; the
    others, and a value before it is learned, share the feature's ``(f, OTHER)``. A missing
    feature stays missing. A feature that is a number in one event and a string in another is
    two features, so no event changes how another is read.

    Examples
    --------
    >>> scaler = TypedScaler()
    >>> for x in [{"t": 1.0, "c": "red"}, {"t": 3.0, "c": "blue"}]:
    ...     scaler.learn_one(x)
    >>> scaler.transform_one({"t": 3.0, "c": "red"})
    {'t': 1.0, 'c=red': 1}
    """

    def __init__(self) -> None:
        # Per feature [count, mean, variance, deviation], one look-up an event. The deviation
        # is kept as it changes: scaling then needs no test (a zero variance gives an infinite
        # deviation, so a 0 scaled value, as River's 0.0).
        self.stats: dict[str, list] = {}
        self.values: dict[str, set] = {}  # per string feature, the values with an indicator

    def __setstate__(self, state: dict) -> None:
        if "stats" not in state:  # pickled by an older version: a dict per statistic
            counts, means = state["counts"], state["means"]
            state = {"stats": {i: [counts[i], means[i], v, v**0.5 if v else math.inf]
                               for i, v in state["vars"].items()}}
        # Older versions kept no string values: each value met from now on gets its indicator
        # again, up to the bound (the indicators learned so far keep their names).
        self.__dict__.update({"values": {}, **state})

    def learn_one(self, x: dict) -> None:
        self._learn(x)

    def learn_transform_one(self, x: dict) -> dict:
        """`learn_one(x)`, then `transform_one(x)`: what a pipeline does on each labelled event,
        in one pass over `x` for the common event (numbers, none an outlier). The same numbers
        to the last bit."""
        scaled = self._learn(x)
        return scaled if scaled is not None else self.transform_one(x)

    def _learn(self, x: dict) -> dict | None:
        """Learn `x`; return it scaled as `transform_one` now would if that is its common case
        (every value a number, none beyond `CLIP` deviations), else None. (`learn_one` drops
        the scaled dict: the pipelines call `learn_transform_one`.)"""
        stats = self.stats
        out = {}
        common = True
        for i, xi in x.items():
            if xi.__class__ is str:
                seen = self.values.get(i)
                if seen is None:
                    seen = self.values[i] = set()
                if len(seen) < MAX_VALUES:
                    seen.add(xi)
                common = False
                continue
            s = stats.get(i)
            if s is None:
                s = stats[i] = [0, 0.0, 0.0, math.inf]
            n = s[0] + 1
            old_mean = s[1]
            v = xi  # the value learned: an outlier's is moved in to CLIP deviations
            if n > WARMUP:
                dev = s[3]
                z = (xi - old_mean) / dev
                if z > CLIP or z < -CLIP:  # an outlier
                    v = old_mean + CLIP * dev if z > 0 else old_mean - CLIP * dev
                elif dev == _INF and not -LARGEST <= xi <= LARGEST:
                    common = False
                    continue
            elif not -LARGEST <= xi <= LARGEST:
                common = False
                continue
            s[0] = n
            mean = s[1] = old_mean + (v - old_mean) / n
            var = s[2]
            var = s[2] = var + ((v - old_mean) * (v - mean) - var) / n
            dev = s[3] = var**0.5 if var else math.inf
            out[i] = (xi - mean) / dev  # as transform_one's first pass
        if common and out and min(out.values()) >= -CLIP and max(out.values()) <= CLIP:
            return out
        return None

    def transform_one(self, x: dict) -> dict:
        stats = self.stats
        try:  # numbers seen before, none an outlier: the common case, two passes of C
            out = {i: (xi - (s := stats[i])[1]) / s[3] for i, xi in x.items()}
            if min(out.values()) >= -CLIP and max(out.values()) <= CLIP:
                return out
        except (KeyError, TypeError, ValueError, OverflowError):  # a string, a feature not
            pass  # learned yet, no feature at all, an integer too large for a float
        out = {}
        values = self.values
        for i, xi in x.items():
            if xi.__class__ is str:
                out[f"{i}={xi}" if xi in values.get(i, ()) else (i, OTHER)] = 1
                continue
            known = stats.get(i)
            if known is None or not known[2]:
                out[i] = 0.0
                continue
            if not -LARGEST <= xi <= LARGEST:
                out[i] = CLIP if xi > 0 else -CLIP
                continue
            z = (xi - known[1]) / known[3]
            if not -CLIP <= z <= CLIP and known[0] >= WARMUP:
                z = CLIP if z > 0 else -CLIP
            out[i] = z
        return out


class SharedScaler(TypedScaler):
    """A `TypedScaler` held by several models of one ensemble, which learns each event once and
    scales it once for all of them.

    The ensemble names the event it is about to predict or learn (`expect`); for that very
    dict, the first `learn_one` learns it and the later ones (another member, or the same
    member repeating a weighted sample) do not, and `transform_one` computes the scaled event
    once and hands the same dict to each caller, who must not change it. Any other dict is
    scaled as by a `TypedScaler`. On a stream whose members are all awake and learn with
    weight 1, each member sees what its own scaler would give it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._event: dict | None = None
        self._learning = False  # the expected event is still to be learned
        self._scaled: dict | None = None

    def expect(self, x: dict | None, learning: bool = False) -> None:
        """`x` is the event the models are about to predict (or learn, `learning`); None: done."""
        self._event, self._learning, self._scaled = x, learning, None

    def learn_one(self, x: dict) -> None:
        if x is self._event:
            if not self._learning:
                return  # learned once already
            self._learning = False
            self._scaled = None
        super().learn_one(x)

    def learn_transform_one(self, x: dict) -> dict:
        if x is not self._event:
            return super().learn_transform_one(x)
        if not self._learning:
            return self.transform_one(x)  # learned once already: its scaling, once
        self._learning = False
        self._scaled = None  # a scaling from before the learning is stale
        scaled = self._scaled = super().learn_transform_one(x)
        return scaled

    def transform_one(self, x: dict) -> dict:
        if x is not self._event:
            return super().transform_one(x)
        scaled = self._scaled
        if scaled is None:
            scaled = self._scaled = super().transform_one(x)
        return scaled

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_event"], state["_scaled"], state["_learning"]  # the event in hand
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.expect(None)


# Trees tell apart the first `TREE_MAX_VALUES` values of a string feature; the later ones share
# `TREE_OTHER`. A tree's nominal observer keeps a count per value and class, and River evaluates
# a split on each value over all the others (a cost of the square of the values), and adds a
# branch per new value below a multiway split: an identifier among the features (a UUID an
# event) made a Hoeffding tree add a node per event (25,000 nodes after 25,000 events, a state
# of 202 MB, 52 events/s).
TREE_MAX_VALUES = 64
TREE_OTHER = "\x00other"  # a string (River sorts a feature's values): no real value's, in practice


class TreeStrings:
    """A tree's view of an event's strings. Each string-valued feature ``f`` is renamed ``f=``:
    a tree then keeps a numeric and a nominal feature apart instead of failing when one event
    flips a feature's type. A value is told apart once the tree has learned from it while the
    feature had fewer than `TREE_MAX_VALUES`; until a feature has that many, the tree sees its
    values as they are, as River's would.

    Examples
    --------
    >>> strings = TreeStrings()
    >>> for i in range(TREE_MAX_VALUES + 1):
    ...     x = strings.learned({"id": f"u{i}", "a": 1.0})
    >>> x == {"id=": TREE_OTHER, "a": 1.0}, strings.predicted({"id": "u1"})
    (True, {'id=': 'u1'})
    """

    def __init__(self) -> None:
        self.values: dict[str, set[str]] = {}  # tagged feature -> the values told apart

    def learned(self, x: dict[str, Any]) -> dict[str, Any]:
        """`x` as the tree learns it (its new values are told apart while there is room)."""
        return self._read(x, learning=True)

    def predicted(self, x: dict[str, Any]) -> dict[str, Any]:
        """`x` as the tree predicts it (a value not learned is unknown to it, as to River's)."""
        return self._read(x, learning=False)

    def _read(self, x: dict[str, Any], learning: bool) -> dict[str, Any]:
        for value in x.values():
            if value.__class__ is str:
                break
        else:
            return x
        values = self.values
        out = {}
        for k, v in x.items():
            if v.__class__ is not str:
                out[k] = v
                continue
            name = f"{k}="
            seen = values.get(name)
            if seen is None:
                seen = values[name] = set()
            if v not in seen:
                if len(seen) >= TREE_MAX_VALUES:
                    v = TREE_OTHER
                elif learning:
                    seen.add(v)
            out[name] = v
        return out
