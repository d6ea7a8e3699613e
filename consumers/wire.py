"""The wire format of an event, decoded and validated.

    {"id": "optional string", "x": {"feature": number | string | bool, ...}, "y": label}

`Decoder.decode` turns the bytes of one message into an `Event` or a `Rejection` with a reason;
it never raises on bad input, so one bad message cannot stop the service. An event without
"y" (or with "y": null) is unlabelled: it gets a prediction and is not learned from. Top-level
keys other than id, x and y are ignored, so producers may add their own (a timestamp, say).

Each message is judged on its own: no message changes how later ones are judged.

- A label is any JSON scalar a classifier can take as a class: an integer, a string or a boolean.
  A float that is a whole number (``1.0``) is the integer 1; any other float is rejected
  (``not_a_class``): regression is not supported.
- A feature is a number, a string (categorical) or a boolean. A feature whose value is ``null``
  is missing: it is dropped from ``x`` (a model sees the event without it), not rejected.
- Limits (`Limits`, set in ``[validation]``) bound the size of everything a model or a metric
  would keep: feature magnitudes, features per event, label, id, feature name and string lengths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

DEFAULT_MAX_BYTES = 1_000_000
# Far above any measured quantity (an epoch timestamp in nanoseconds is about 1.8e18), far
# below where a square overflows a float (1.3e154), against which the scaler and the trees also
# guard (docs/validation.md). At 1e12 before, a timestamp in milliseconds was out of range.
DEFAULT_MAX_ABS_VALUE = 1e100
DEFAULT_MAX_FEATURES = 1000
DEFAULT_MAX_LABEL_CHARS = 256
DEFAULT_MAX_ID_CHARS = 256
DEFAULT_MAX_FEATURE_NAME_CHARS = 256
DEFAULT_MAX_STRING_VALUE_CHARS = 1024

# A rejection's detail is meant for a log line and a header: never longer than this.
MAX_DETAIL_CHARS = 200


class Event(NamedTuple):
    """A validated event; `y` is None when unlabelled; `x` is None for a delayed label (a
    message with an `id` and a `y` and no `x`). (A tuple: cheap to make per message.)"""

    x: dict[str, float | int | str | bool] | None
    y: int | str | bool | None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not an event; `reason` is one of `REASONS`, `detail` says more."""

    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:  # a new reason must be listed, or no metric shows it
            raise ValueError(f"unknown rejection reason {self.reason!r}; add it to REASONS")


# Every reason a message can be dead-lettered for, wherever it is decided, so that metrics can
# export each at 0 from the start. Tags are part of the contract: add, never rename.
REASONS: tuple[str, ...] = (
    # the decoder
    "empty",  # no value at all
    "too_large",  # more than max_message_bytes
    "not_utf8",
    "not_json",  # includes nesting too deep to parse
    "not_object",  # valid JSON, not an object
    "missing_x",
    "x_not_mapping",
    "bad_feature",  # a feature value that is a list or an object
    "not_finite",  # NaN, Infinity, or a number that overflows a float
    "out_of_range",  # |value| above max_abs_value, or an integer beyond +-2**63
    "too_many_features",  # more than max_features
    "too_long",  # a label, id, feature name or string value above its length limit
    "bad_id",  # "id" not a string
    "bad_label",  # "y" a list or an object
    "not_a_class",  # "y" a float that is not a whole number
    "schema",  # does not match [validation] features
    # the service
    "model_error",  # a model raised on the event
    # reserved for the pipeline and the service
    "too_many_feature_names",
    "too_many_classes",
    "unknown_id",
    "duplicate_label",
    "duplicate_id",  # an event whose id is already waiting for its label
    "not_a_label",  # a message on the labels topic that is not {"id": ..., "y": ...}
)
MODEL_ERROR = "model_error"
NOT_A_LABEL = "not_a_label"


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON and poison models.
    raise _NotFinite(f"{name} is not a finite number")


# Integers beyond this cannot become a float exactly (2**63 is far past float precision already,
# and past ~1e308 a model's float conversion raises): such numbers are always rejected.
MAX_INT = 2**63


def _plain(x: dict[str, Any], max_name: int, bound: float) -> bool:
    """Whether every feature of `x` is a number (or boolean) within +-`bound` under a name of
    at most `max_name` characters: the common event, checked in three passes of C instead of a
    Python loop. Anything else (a string, a null, a list; NaN fails every comparison) takes the
    loop, which says what is wrong."""
    try:
        return (
            max(map(len, x)) <= max_name
            and -bound <= min(x.values())
            and max(x.values()) <= bound
        )
    except TypeError:  # values that do not compare with numbers, or each other
        return False


# The ids that orjson reads as the standard library does (an integer beyond 64 bits would be a
# float); a label's float is checked against MAX_INT.
_ID_TYPES = (str, type(None))

# One decoder for all messages: json.loads with keyword arguments would build one per call.
_JSON = json.JSONDecoder(parse_constant=_no_constant)

FEATURE_KINDS = ("number", "string", "bool")
_KIND_TYPES = {"number": (int, float), "string": (str,), "bool": (bool,)}


def short(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """`text` cut to at most `limit` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    marker = f"...[cut: {len(text)} chars]"
    return text[: max(0, limit - len(marker))] + marker


def _name(key: str) -> str:
    """A feature name (or any user string) as it may appear in a detail: quoted, cut."""
    return repr(key) if len(key) <= 40 else repr(key[:40]) + f"... ({len(key)} chars)"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one event; each has a default a user would expect (see docs/validation.md)."""

    max_abs_value: float = DEFAULT_MAX_ABS_VALUE
    max_features: int = DEFAULT_MAX_FEATURES
    max_label_chars: int = DEFAULT_MAX_LABEL_CHARS
    max_id_chars: int = DEFAULT_MAX_ID_CHARS
    max_feature_name_chars: int = DEFAULT_MAX_FEATURE_NAME_CHARS
    max_string_value_chars: int = DEFAULT_MAX_STRING_VALUE_CHARS


class Decoder:
    """Decodes messages; stateless: the same bytes always give the same result.

    `features`, when given, maps each expected feature name to "number", "string" or "bool":
    an event missing one, or with one of another type, is rejected (reason "schema"); so is an
    event with other features unless `allow_extra_features`.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        features: dict[str, str] | None = None,
        allow_extra_features: bool = True,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.limits = limits = limits or Limits()
        self.schema = (
            {name: _KIND_TYPES[kind] for name, kind in features.items()} if features else None
        )
        self.allow_extra_features = allow_extra_features
        # Bounds as plain attributes: read once per message, not through `limits`.
        self._max_abs = limits.max_abs_value
        self._plain_bound = min(limits.max_abs_value, float(2**62))  # also inside +-MAX_INT
        self._max_features = limits.max_features
        self._max_label = limits.max_label_chars
        self._max_id = limits.max_id_chars
        self._max_name = limits.max_feature_name_chars
        self._max_string = limits.max_string_value_chars

    def _check_schema(self, x: dict[str, Any]) -> Rejection | None:
        assert self.schema is not None
        for name, types in self.schema.items():
            if name not in x:
                return Rejection("schema", f"feature {_name(name)} is missing")
            v = x[name]
            # bool is an int subclass: a number feature must not accept true/false
            if not isinstance(v, types) or (type(v) is bool and bool not in types):
                return Rejection("schema", f"feature {_name(name)} is {type(v).__name__}, "
                                           f"expected {_kind_name(types)}")
        if not self.allow_extra_features and len(x) > len(self.schema):
            extra = sorted(set(x) - set(self.schema))
            names = ", ".join(_name(k) for k in extra[:5])
            return Rejection("schema", short(f"unexpected features [{names}]"))
        return None

    def decode(self, value: bytes | None) -> Event | Rejection:
        if not value:
            return Rejection("empty", "the message has no value")
        if len(value) > self.max_bytes:
            return Rejection("too_large", f"{len(value)} bytes, more than {self.max_bytes}")
        if value[0] == 0:  # JSON never starts with a zero byte
            return self._framed(value)
        # orjson first: strict RFC 8259 and about four times as fast. On what it accepts, it
        # reads what the standard decoder reads, but for integers beyond 64 bits, which it
        # makes floats: an id or a label of that kind, or a feature float beyond MAX_INT, is
        # decoded again by the standard decoder, as is all that orjson refuses (NaN, lone
        # surrogates), so every rejection keeps its reason and its detail.
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return self._standard(value)
        if type(obj) is not dict:
            return self._standard(value)
        y = obj.get("y")
        if type(obj.get("id")) not in _ID_TYPES or (
                type(y) is float and not -MAX_INT < y < MAX_INT):
            return self._standard(value)
        return self._check(obj, value)

    def _framed(self, value: bytes) -> Event | Rejection:
        """A message framed by a Schema Registry serializer (Confluent's wire format): a zero
        byte, a 4-byte schema id, the payload. A JSON payload (the JSON Schema serializer's) is
        read as if it were the message; Avro and Protobuf payloads need the registry to be read,
        and are refused with the schema id named."""
        if len(value) < 6:
            return Rejection("not_json", f"{len(value)} bytes starting with a zero byte")
        schema_id = int.from_bytes(value[1:5], "big")
        event = self.decode(value[5:]) if value[5] != 0 else None
        if event is None or (isinstance(event, Rejection)
                             and event.reason in ("not_json", "not_utf8")):
            return Rejection("not_json", f"a Schema Registry frame (schema id {schema_id}) "
                                         "around a payload that is not JSON: only JSON "
                                         "payloads are read (Avro and Protobuf need the registry)")
        return event

    def _standard(self, value: bytes) -> Event | Rejection:
        """`value` through the standard library's decoder, which says what is wrong with it."""
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("not_utf8", short(str(exc)))
        try:
            obj = _JSON.decode(text)
        except _NotFinite as exc:
            return Rejection("not_finite", str(exc))
        except (ValueError, RecursionError) as exc:
            return Rejection("not_json", short(str(exc)))
        if type(obj) is not dict:
            return Rejection("not_object", f"expected a JSON object, got {type(obj).__name__}")
        return self._check(obj, None)

    def _check(self, obj: dict[str, Any], value: bytes | None) -> Event | Rejection:
        """The checks of a decoded object; `value`: its bytes if orjson decoded it (a float
        beyond MAX_INT may then be an integer literal: decoded again)."""
        x = obj.get("x")
        if type(x) is not dict:
            if x is None and "id" in obj and obj.get("y") is not None:
                return self._label_only(obj)  # the label of an earlier event, joined by id
            if x is None:
                return Rejection("missing_x", "no 'x' mapping of features")
            return Rejection("x_not_mapping", f"'x' must be an object, got {type(x).__name__}")
        if len(x) > self._max_features:
            return Rejection(
                "too_many_features", f"{len(x)} features, more than {self._max_features}"
            )
        if x and _plain(x, self._max_name, self._plain_bound):
            return self._rest(obj, x)
        max_abs = self._max_abs
        max_name = self._max_name
        missing = False
        for key, v in x.items():
            if len(key) > max_name:
                return Rejection(
                    "too_long", f"feature name {_name(key)} is longer than {max_name} characters"
                )
            t = type(v)
            if t is float:
                if value is not None and not -MAX_INT < v < MAX_INT:
                    return self._standard(value)  # maybe an integer literal to orjson
                if not -max_abs <= v <= max_abs:  # NaN fails every comparison
                    if v - v != 0.0:  # inf - inf is nan; nan - nan is nan; finite - itself is 0
                        return Rejection("not_finite", f"feature {_name(key)} is {v}")
                    return Rejection(
                        "out_of_range", f"feature {_name(key)} is {v:g}, |value| > {max_abs:g}"
                    )
            elif t is int:
                if not -max_abs <= v <= max_abs or not -MAX_INT < v < MAX_INT:
                    return Rejection(
                        "out_of_range",
                        f"feature {_name(key)} is an integer beyond +-{min(max_abs, MAX_INT):g}",
                    )
            elif t is str:
                if len(v) > self._max_string:
                    return Rejection(
                        "too_long", f"feature {_name(key)} is a string of {len(v)} characters, "
                                    f"more than {self._max_string}")
            elif v is None:
                missing = True
            elif t is not bool:
                return Rejection("bad_feature", f"feature {_name(key)} is {t.__name__}, "
                                                "not a number, string or boolean")
        if missing:  # null is a missing value: the feature is left out
            x = {key: v for key, v in x.items() if v is not None}
        return self._rest(obj, x)

    def _rest(self, obj: dict[str, Any], x: dict[str, Any]) -> Event | Rejection:
        """The checks after the features': schema, id and label."""
        if self.schema is not None and (bad := self._check_schema(x)) is not None:
            return bad
        event_id = obj.get("id")
        if event_id is not None and (bad := self._check_id(event_id)) is not None:
            return bad
        y = obj.get("y")
        if y is None:
            return Event(x, None, event_id)
        label = self._label(y)
        return label if isinstance(label, Rejection) else Event(x, label, event_id)

    def _check_id(self, event_id: Any) -> Rejection | None:
        if type(event_id) is not str:
            return Rejection("bad_id", f"'id' must be a string, got {type(event_id).__name__}")
        if len(event_id) > self._max_id:
            return Rejection(
                "too_long", f"'id' has {len(event_id)} characters, more than {self._max_id}"
            )
        return None

    def _label_only(self, obj: dict[str, Any]) -> Event | Rejection:
        event_id = obj["id"]
        if (bad := self._check_id(event_id)) is not None:
            return bad
        label = self._label(obj["y"])
        return label if isinstance(label, Rejection) else Event(None, label, event_id)

    def _label(self, y: Any) -> Any:
        """The label `y` as a class (a whole float becomes the int), or why it is not one."""
        t = type(y)
        if t is int:
            if not -MAX_INT < y < MAX_INT:
                return Rejection("out_of_range", "the label is an integer beyond +-2**63")
        elif t is str:
            if len(y) > self._max_label:
                return Rejection(
                    "too_long", f"the label has {len(y)} characters, more than {self._max_label}"
                )
        elif t is float:
            if y - y != 0.0:
                return Rejection("not_finite", f"the label is {y}")
            if not y.is_integer():
                return Rejection(
                    "not_a_class",
                    f"the label {y!r} is a float that is not a whole number, so not a "
                    "classification label; regression is not supported",
                )
            if not -MAX_INT < y < MAX_INT:
                return Rejection("out_of_range", "the label is an integer beyond +-2**63")
            y = int(y)  # 1.0 and 1 are the same class
        elif t is not bool:
            return Rejection("bad_label", f"'y' must be a scalar, got {t.__name__}")
        return y


def _kind_name(types: tuple[type, ...]) -> str:
    return next(kind for kind, t in _KIND_TYPES.items() if t == types)


def encode(x: dict[str, Any] | None, y: Any = None, event_id: str | None = None) -> bytes:
    """The wire bytes of one event (what `driftline publish` sends); `x=None` with an id and a
    label: the delayed label of that event."""
    obj: dict[str, Any] = {} if x is None else {"x": x}
    if event_id is not None:
        obj["id"] = event_id
    if y is not None:
        obj["y"] = y
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
