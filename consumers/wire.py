"""The wire format of an event, decoded and validated.

    {"id": "optional string", "x": {"feature": number | string | bool, ...}, "y": label}

`Decoder.decode` turns the bytes of one message into an `Event` or a `Rejection` with a reason;
it never raises on bad input, so one bad message cannot stop the service. An event without
"y" (or with "y": null) is unlabelled: it gets a prediction and is not learned from. Top-level
keys other than id, x and y are ignored, so producers may add their own (a timestamp, say).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

DEFAULT_MAX_BYTES = 1_000_000


class Event(NamedTuple):
    """A validated event; `y` is None when unlabelled. (A tuple: cheap to make per message.)"""

    x: dict[str, float | int | str | bool]
    y: float | int | str | bool | None
    id: str | None = None


# Every reason a message can be dead-lettered for: the decoder's, then the service's
# (`model_error`: a model raised on the event). Metrics export each of them from the start.
REASONS = (
    "empty",
    "too_large",
    "not_utf8",
    "not_json",
    "not_finite",
    "not_object",
    "missing_x",
    "x_not_mapping",
    "bad_feature",
    "schema",
    "bad_id",
    "bad_label",
    "label_type",
    "model_error",
)
MODEL_ERROR = "model_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not an event; `reason` is one of `REASONS`, `detail` says more."""

    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:  # a new reason must be listed, or no metric shows it
            raise ValueError(f"unknown rejection reason {self.reason!r}; add it to REASONS")


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON and poison models.
    raise _NotFinite(f"{name} is not a finite number")


# Integers beyond this cannot become a float exactly (2**63 is far past float precision already,
# and past ~1e308 a model's float conversion raises): such numbers are rejected.
MAX_INT = 2**63


# One decoder for all messages: json.loads with keyword arguments would build one per call.
_JSON = json.JSONDecoder(parse_constant=_no_constant)
_LABEL_KINDS = {bool: "bool", int: "number", float: "number", str: "string"}


FEATURE_KINDS = ("number", "string", "bool")
_KIND_TYPES = {"number": (int, float), "string": (str,), "bool": (bool,)}


class Decoder:
    """Decodes messages; the first label seen fixes the label type of the stream.

    `features`, when given, maps each expected feature name to "number", "string" or "bool":
    an event missing one, or with one of another type, is rejected (reason "schema"); so is an
    event with other features unless `allow_extra_features`.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        features: dict[str, str] | None = None,
        allow_extra_features: bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self.label_kind: str | None = None
        self.schema = (
            {name: _KIND_TYPES[kind] for name, kind in features.items()} if features else None
        )
        self.allow_extra_features = allow_extra_features

    def _check_schema(self, x: dict[str, Any]) -> Rejection | None:
        assert self.schema is not None
        for name, types in self.schema.items():
            if name not in x:
                return Rejection("schema", f"feature {name!r} is missing")
            v = x[name]
            # bool is an int subclass: a number feature must not accept true/false
            if not isinstance(v, types) or (type(v) is bool and bool not in types):
                return Rejection("schema", f"feature {name!r} is {type(v).__name__}, "
                                           f"expected {_kind_name(types)}")
        if not self.allow_extra_features and len(x) > len(self.schema):
            extra = sorted(set(x) - set(self.schema))
            return Rejection("schema", f"unexpected features {extra[:5]}")
        return None

    def decode(self, value: bytes | None) -> Event | Rejection:
        if not value:
            return Rejection("empty", "the message has no value")
        if len(value) > self.max_bytes:
            return Rejection("too_large", f"{len(value)} bytes, more than {self.max_bytes}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("not_utf8", str(exc))
        try:
            obj = _JSON.decode(text)
        except _NotFinite as exc:
            return Rejection("not_finite", str(exc))
        except (ValueError, RecursionError) as exc:
            return Rejection("not_json", str(exc)[:200])
        if type(obj) is not dict:
            return Rejection("not_object", f"expected a JSON object, got {type(obj).__name__}")
        x = obj.get("x")
        if type(x) is not dict:
            if x is None:
                return Rejection("missing_x", "no 'x' mapping of features")
            return Rejection("x_not_mapping", f"'x' must be an object, got {type(x).__name__}")
        for key, v in x.items():
            t = type(v)
            if t is float:
                if v - v != 0.0:  # inf - inf is nan; nan - nan is nan; finite - itself is 0
                    return Rejection("not_finite", f"feature {key!r} is {v}")
            elif t is int:
                if not -MAX_INT < v < MAX_INT:
                    return Rejection("not_finite", f"feature {key!r} is an integer out of range")
            elif t is not str and t is not bool:
                found = "null" if v is None else t.__name__
                return Rejection("bad_feature", f"feature {key!r} is {found}, not a scalar")
        if self.schema is not None and (bad := self._check_schema(x)) is not None:
            return bad
        event_id = obj.get("id")
        if event_id is not None and type(event_id) is not str:
            return Rejection("bad_id", f"'id' must be a string, got {type(event_id).__name__}")
        y = obj.get("y")
        if y is None:
            return Event(x, None, event_id)
        kind = _LABEL_KINDS.get(type(y))
        if kind is None:
            return Rejection("bad_label", f"'y' must be a scalar, got {type(y).__name__}")
        if kind == "number":
            in_range = -MAX_INT < y < MAX_INT if type(y) is int else math.isfinite(y)
            if not in_range:
                return Rejection("not_finite", "the label is not a finite number in range")
        if self.label_kind is None:
            self.label_kind = kind
        elif kind != self.label_kind:
            return Rejection(
                "label_type", f"label {y!r} is a {kind}; this stream's labels are {self.label_kind}"
            )
        return Event(x, y, event_id)


def _kind_name(types: tuple[type, ...]) -> str:
    return next(kind for kind, t in _KIND_TYPES.items() if t == types)


def encode(x: dict[str, Any], y: Any = None, event_id: str | None = None) -> bytes:
    """The wire bytes of one event (what `driftline publish` sends)."""
    obj: dict[str, Any] = {"x": x}
    if event_id is not None:
        obj["id"] = event_id
    if y is not None:
        obj["y"] = y
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
