"""The wire format: valid events, every rejection tag, round trips, and fuzzing."""

import json
import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.wire import (
    DEFAULT_MAX_BYTES,
    MAX_DETAIL_CHARS,
    REASONS,
    Decoder,
    Event,
    Limits,
    Rejection,
    encode,
)


def decode(value, decoder=None):
    return (decoder or Decoder()).decode(value)


def test_labelled_event():
    event = decode(b'{"id": "e1", "x": {"a": 1.5, "b": 2, "c": "red", "d": true}, "y": 1}')
    assert event == Event({"a": 1.5, "b": 2, "c": "red", "d": True}, 1, "e1")


def test_extra_top_level_keys_are_ignored():
    assert decode(b'{"x": {"a": 1}, "y": "up", "ts": 123}') == Event({"a": 1}, "up", None)


@pytest.mark.parametrize("value", [b'{"x": {"a": 1}}', b'{"x": {"a": 1}, "y": null}'])
def test_unlabelled_event(value):
    event = decode(value)
    assert isinstance(event, Event)
    assert event.x == {"a": 1}
    assert event.y is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"x": {"a": "\xc3\x28"}}', "not_utf8"),
        (b"{not json", "not_json"),
        (b'{"x": {"a": 1}', "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (b'{"y": 1}', "missing_x"),
        (b'{"x": null, "y": 1}', "missing_x"),
        (b'{"x": [1, 2]}', "x_not_mapping"),
        (b'{"x": "a=1"}', "x_not_mapping"),
        (b'{"x": {"a": {"b": 1}}}', "bad_feature"),
        (b'{"x": {"a": [1]}}', "bad_feature"),
        # NaN and Infinity literals are not JSON (RFC 8259) and not finite: one tag for both
        (b'{"x": {"a": NaN}}', "not_finite"),
        (b'{"x": {"a": Infinity}}', "not_finite"),
        (b'{"x": {"a": -Infinity}}', "not_finite"),
        (b'{"x": {"a": 1}, "y": NaN}', "not_finite"),
        # valid JSON numbers that overflow a float
        (b'{"x": {"a": 1e999}}', "not_finite"),
        (b'{"x": {"a": -1e999}}', "not_finite"),
        (b'{"x": {"a": 1}, "y": 1e999}', "not_finite"),
        # beyond max_abs_value (1e100 by default): a scaler's variance would overflow to inf
        (b'{"x": {"a": 1e308}}', "out_of_range"),
        (b'{"x": {"a": -1e101}}', "out_of_range"),
        # an integer beyond +-2**63, whatever max_abs_value (orjson reads one as a float)
        (b'{"x": {"a": 10000000000000000000}}', "out_of_range"),
        (b'{"x": {"a": -9223372036854775809}}', "out_of_range"),
        (b'{"x": {"a": 1}, "y": 0.5}', "not_a_class"),
        (b'{"x": {"a": 1}, "y": -2.25}', "not_a_class"),
        (b'{"x": {"a": 1}, "y": 1e20}', "out_of_range"),
        (b'{"x": {"a": 1}, "y": {"class": 1}}', "bad_label"),
        (b'{"x": {"a": 1}, "y": [1]}', "bad_label"),
        (b'{"x": {"a": 1}, "id": 7}', "bad_id"),
        (b'{"x": {"a": 1}, "id": ["e"]}', "bad_id"),
        (b"[" * 100_000, "not_json"),
    ],
)
def test_rejection_reason(value, reason):
    result = decode(value)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert reason in REASONS
    assert result.detail


def test_no_message_changes_how_later_ones_are_judged():
    """Labels of every scalar type are accepted, in any order, by one decoder: a first label
    does not fix a type for the stream any more."""
    values = [b'{"x": {"a": 1}, "y": 1}', b'{"x": {"a": 1}, "y": "1"}',
              b'{"x": {"a": 1}, "y": true}', b'{"x": {"a": 1}, "y": 0}',
              b'{"x": {"a": 1}, "y": "up"}', b'{"x": {"a": 1}, "y": false}']
    alone = [Decoder().decode(v) for v in values]
    assert [e.y for e in alone] == [1, "1", True, 0, "up", False]
    for order in (values, values[::-1], values[2:] + values[:2]):
        decoder = Decoder()
        results = {v: decoder.decode(v) for v in order}
        assert [results[v] for v in values] == alone


def test_a_whole_float_label_is_the_integer_class():
    for text, expected in [(b"1.0", 1), (b"-0.0", 0), (b"3e2", 300), (b"-7.0", -7)]:
        event = decode(b'{"x": {"a": 1}, "y": ' + text + b"}")
        assert event.y == expected and type(event.y) is int


def test_a_float_label_that_is_not_whole_is_not_a_class():
    result = decode(b'{"x": {"a": 1}, "y": 0.5}')
    assert result.reason == "not_a_class"
    assert "regression is not supported" in result.detail


def test_bool_labels_stay_booleans():
    assert decode(b'{"x": {"a": 1}, "y": true}').y is True
    assert decode(b'{"x": {"a": 1}, "y": 1}').y == 1
    assert type(decode(b'{"x": {"a": 1}, "y": 1}').y) is int


def test_a_null_feature_is_missing_not_rejected():
    assert decode(b'{"x": {"a": null, "b": 2}, "y": 1}') == Event({"b": 2}, 1)
    assert decode(b'{"x": {"a": null}}') == Event({}, None)
    schema = Decoder(features={"a": "number"})
    result = schema.decode(b'{"x": {"a": null}, "y": 1}')
    assert result.reason == "schema" and "'a' is missing" in result.detail


def test_magnitude_limit_is_configurable_and_inclusive():
    assert isinstance(decode(b'{"x": {"a": 1e100, "b": -1e100}}'), Event)
    # timestamps in milliseconds and nanoseconds, within the default limit
    assert isinstance(decode(b'{"x": {"ms": 1795000000000, "ns": 1795000000000000000}}'), Event)
    wide = Decoder(limits=Limits(max_abs_value=1e300))
    assert isinstance(wide.decode(b'{"x": {"a": 1e299}}'), Event)
    assert wide.decode(b'{"x": {"a": 1e301}}').reason == "out_of_range"
    # integers beyond +-2**63 stay rejected whatever the limit
    assert wide.decode(b'{"x": {"a": 9223372036854775808}}').reason == "out_of_range"
    narrow = Decoder(limits=Limits(max_abs_value=10))
    assert narrow.decode(b'{"x": {"a": 11}}').reason == "out_of_range"
    assert narrow.decode(b'{"x": {"a": -10.5}}').reason == "out_of_range"
    assert isinstance(narrow.decode(b'{"x": {"a": 10, "s": "long text"}}'), Event)


def test_too_many_features():
    limits = Limits(max_features=3)
    assert isinstance(Decoder(limits=limits).decode(encode({"a": 1, "b": 2, "c": 3})), Event)
    result = Decoder(limits=limits).decode(encode({"a": 1, "b": 2, "c": 3, "d": 4}))
    assert result.reason == "too_many_features"
    assert decode(encode({f"f{i}": i for i in range(1001)})).reason == "too_many_features"
    assert isinstance(decode(encode({f"f{i}": i for i in range(1000)})), Event)


@pytest.mark.parametrize(
    ("x", "y", "event_id"),
    [
        ({"n" * 257: 1}, 1, None),  # feature name
        ({"a": 1}, "c" * 257, None),  # label
        ({"a": "v" * 1025}, 1, None),  # string value
        ({"a": 1}, 1, "i" * 257),  # id
    ],
)
def test_too_long(x, y, event_id):
    result = decode(encode(x, y, event_id))
    assert result.reason == "too_long"
    shorter = Limits(256, 1000, 257, 257, 257, 1025)
    assert isinstance(Decoder(limits=shorter).decode(encode(x, y, event_id)), Event)


def test_details_stay_short_whatever_the_message():
    """A 600 kB feature name must not end up whole in a log line or a header."""
    name = "n" * 600_000
    for value in (
        encode({name: 1}),
        encode({"a": 1, name: [1]}, 1),
        b'{"x": {"' + name.encode() + b'": [1]}}',
        b'{"x": {"a": "' + name.encode() + b'"}}',
        b'{"x": {"a": 1}, "y": "' + name.encode() + b'"}',
        b'{"x": {"a": 1}, "id": "' + name.encode() + b'"}',
        b'{"x": {"' + name.encode() + b'": 1e999}}',
        b'{"x": ' + name.encode() + b"}",
        b'{"x": {"a": "\xff' + name.encode() + b'"}}',
    ):
        for decoder in (Decoder(), Decoder(limits=Limits(10**9, 10**9, 10**9, 10**9, 10**9,
                                                           10**9),
                                           features={"b": "number"},
                                           allow_extra_features=False)):
            result = decoder.decode(value)
            assert isinstance(result, Rejection), value[:60]
            assert len(result.detail) <= MAX_DETAIL_CHARS, (result.reason, result.detail[:80])


def test_every_reason_is_listed_once():
    assert len(REASONS) == len(set(REASONS))
    for reserved in ("model_error", "too_many_feature_names", "too_many_classes", "unknown_id",
                     "duplicate_label"):
        assert reserved in REASONS
    assert "label_type" not in REASONS  # labels are no longer typed by the first one


def test_too_large():
    value = b'{"x": {"a": 1}}'
    assert Decoder(max_bytes=10).decode(value).reason == "too_large"
    assert isinstance(Decoder(max_bytes=len(value)).decode(value), Event)
    assert Decoder().max_bytes == DEFAULT_MAX_BYTES


# Python ints have no size limit; a float does. These two crash the service today.
HUGE = b"1" + b"0" * 400


def test_huge_integer_label_is_rejected():
    assert isinstance(decode(b'{"x": {"a": 1}, "y": ' + HUGE + b"}"), Rejection)


def test_huge_integer_feature_is_rejected():
    assert isinstance(decode(b'{"x": {"a": ' + HUGE + b"}}"), Rejection)


# --- encode ---------------------------------------------------------------------------------


def test_encode_is_compact_json():
    assert encode({"a": 1}, 0, "e") == b'{"x":{"a":1},"id":"e","y":0}'
    assert encode({"a": 1}) == b'{"x":{"a":1}}'


def test_encode_refuses_nan():
    with pytest.raises(ValueError):
        encode({"a": math.nan}, 1)


FLOATS = [0.1, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, 2.0**53 + 1, 123456789.123456789]


# Without a magnitude or length limit: what a round trip keeps, whatever the value.
UNLIMITED = Decoder(limits=Limits(math.inf, 10**9, 10**9, 10**9, 10**9, 10**9))


@pytest.mark.parametrize("v", FLOATS)
def test_round_trip_of_floats_is_exact(v):
    event = UNLIMITED.decode(encode({"a": v, "é ü": -v}, 1))
    assert event.x["a"].hex() == v.hex()
    assert event.x["é ü"].hex() == (-v).hex()


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
labels = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1), st.text()
)


@settings(max_examples=300, deadline=None, database=None)
@given(x=st.dictionaries(st.text(), scalars), y=st.none() | labels, event_id=st.none() | st.text())
def test_round_trip(x, y, event_id):
    event = UNLIMITED.decode(encode(x, y, event_id))
    assert event == Event(x, y, event_id)
    assert [type(v) for v in event.x.values()] == [type(v) for v in x.values()]
    assert type(event.y) is type(y)


# --- fuzzing: decode never raises -----------------------------------------------------------

small_text = st.text(max_size=6)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | small_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(small_text, children, max_size=3)
    ),
    max_leaves=6,
)
feature_values = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False), small_text
)
well_formed = st.fixed_dictionaries(
    {"x": st.dictionaries(small_text, feature_values, max_size=4)},
    optional={"y": st.none() | feature_values, "id": st.none() | small_text},
)
half_formed = st.fixed_dictionaries({"x": json_values}, optional={"y": json_values})
payloads = st.one_of(
    st.binary(max_size=100),
    st.none(),
    json_values.map(lambda v: json.dumps(v).encode()),
    well_formed.map(lambda v: json.dumps(v).encode()),
    half_formed.map(lambda v: json.dumps(v).encode()),
)


def is_finite_scalar(v):
    if type(v) is str or type(v) is bool:
        return True
    return type(v) in (int, float) and math.isfinite(v)


TIGHT = Decoder(limits=Limits(100.0, 3, 4, 4, 4, 4))
STRICT = Decoder(max_bytes=60, features={"": "number", "a": "string"}, allow_extra_features=False)


@settings(
    max_examples=10_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(payloads)
def test_decode_never_raises(value):
    for decoder in (Decoder(), TIGHT, STRICT):
        result = decoder.decode(value)
        assert isinstance(result, Event | Rejection)
        if isinstance(result, Rejection):
            assert result.reason in REASONS and isinstance(result.detail, str)
            assert len(result.detail) <= MAX_DETAIL_CHARS
            continue
        limits = decoder.limits
        assert type(result.x) is dict
        assert len(result.x) <= limits.max_features
        assert all(type(k) is str and is_finite_scalar(v) for k, v in result.x.items())
        assert all(len(k) <= limits.max_feature_name_chars for k in result.x)
        assert all(abs(v) <= limits.max_abs_value for v in result.x.values()
                   if type(v) in (int, float))
        assert result.y is None or type(result.y) in (int, str, bool)  # never a float
        assert result.id is None or type(result.id) is str


SCHEMA = {"temp": "number", "city": "string", "open": "bool"}


@pytest.mark.parametrize(
    ("x", "detail"),
    [
        ({"city": "Oslo", "open": True}, "'temp' is missing"),
        ({"temp": "hot", "city": "Oslo", "open": True}, "'temp' is str, expected number"),
        ({"temp": True, "city": "Oslo", "open": True}, "'temp' is bool, expected number"),
        ({"temp": 1, "city": 5, "open": True}, "'city' is int, expected string"),
        ({"temp": 1, "city": "Oslo", "open": 1}, "'open' is int, expected bool"),
        ({"temp": 1, "city": "Oslo", "open": True, "wind": 3}, "unexpected features ['wind']"),
    ],
)
def test_a_configured_schema_rejects_what_does_not_match(x, detail):
    decoder = Decoder(features=SCHEMA, allow_extra_features=False)
    result = decoder.decode(encode(x, 1))
    assert isinstance(result, Rejection)
    assert result.reason == "schema"
    assert detail in result.detail


def test_a_configured_schema_accepts_matching_events_and_extras_when_allowed():
    x = {"temp": 1.5, "city": "Oslo", "open": False, "wind": 3}
    assert Decoder(features=SCHEMA).decode(encode(x, 1)) == Event(x, 1)
    assert Decoder(features=SCHEMA, allow_extra_features=False).decode(
        encode({"temp": 2, "city": "Rome", "open": True}, 0)) == Event(
        {"temp": 2, "city": "Rome", "open": True}, 0)


def test_a_label_without_x_is_the_delayed_label_of_an_id():
    decoder = Decoder()
    assert decoder.decode(b'{"id": "e1", "y": "cat"}') == Event(None, "cat", "e1")
    assert decoder.decode(b'{"id": "e1", "y": 2.0}') == Event(None, 2, "e1")
    assert decoder.decode(b'{"id": "e1", "y": 2.5}').reason == "not_a_class"
    assert decoder.decode(b'{"id": 7, "y": 1}').reason == "bad_id"
    assert decoder.decode(b'{"y": 1}').reason == "missing_x"  # no id: nothing to join
    assert decoder.decode(b'{"id": "e1"}').reason == "missing_x"


_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([1e12, -1e12, 1e100, -1e100, 1.0000000000000002e100, 2**63, -(2**63), 2**62,
                     2**64, -(2**64), 10**30]),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=12), _values, min_size=1, max_size=5),
       _values | st.floats(), st.one_of(st.none(), st.text(max_size=3), st.integers()),
       st.sampled_from(["", "NaN", "-Infinity", "\"\\ud800\"", "123456789012345678901234"]))
def test_the_fast_path_for_plain_numbers_decides_as_the_full_check(x, y, event_id, raw):
    """orjson and the check for plain numbers against the standard decoder and the full check,
    on any message (a raw literal that orjson refuses or reads otherwise, as the label)."""
    decoder = Decoder(limits=Limits(max_feature_name_chars=8))
    value = json.dumps({"x": x, "y": y, "id": event_id}).encode()
    if raw:
        value = value[:-1] + b', "y": ' + raw.encode() + b"}"
    fast = decoder.decode(value)
    import consumers.wire as wire

    class Refuses:  # orjson refusing everything: the standard decoder reads every message
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def loads(value: bytes) -> None:
            raise orjson.JSONDecodeError("refused", "", 0)

    plain, wire._plain = wire._plain, lambda *args: False
    fast_json, wire.orjson = wire.orjson, Refuses  # type: ignore[assignment]
    try:
        full = decoder.decode(value)
    finally:
        wire._plain, wire.orjson = plain, fast_json
    assert fast == full


def _frame(payload: bytes, schema_id: int = 7) -> bytes:
    """Confluent's wire format: a zero byte, the schema id (4 bytes, big-endian), the payload."""
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def test_a_json_payload_framed_by_a_schema_registry_serializer_is_read_as_it_is():
    plain = b'{"id": "e1", "x": {"a": 1.5, "city": "Oslo"}, "y": "yes"}'
    assert decode(_frame(plain)) == decode(plain)
    assert isinstance(decode(_frame(plain)), Event)
    # the checks still apply to what is inside the frame
    inner = decode(_frame(b'{"x": {"a": NaN}, "y": 1}'))
    assert isinstance(inner, Rejection) and inner.reason == "not_finite"


@pytest.mark.parametrize("payload", [b"\x02\x06abc\x00", b"\x00\x02\x10\x01", b"{not json"])
def test_a_framed_payload_that_is_not_json_is_refused_with_its_schema_id(payload):
    rejected = decode(_frame(payload, schema_id=4242))
    assert isinstance(rejected, Rejection) and rejected.reason == "not_json"
    assert "schema id 4242" in rejected.detail and "Avro" in rejected.detail


@pytest.mark.parametrize("value", [b"\x00", b"\x00\x00\x00\x00\x07"])
def test_a_zero_byte_too_short_for_a_frame_is_not_json(value):
    rejected = decode(value)
    assert isinstance(rejected, Rejection) and rejected.reason == "not_json"
