"""The wire format: valid events, every rejection tag, round trips, and fuzzing."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.wire import DEFAULT_MAX_BYTES, Decoder, Event, Rejection, encode


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
        (b'{"x": {"a": null}}', "bad_feature"),
        # NaN and Infinity literals are not JSON (RFC 8259) and not finite: one tag for both
        (b'{"x": {"a": NaN}}', "not_finite"),
        (b'{"x": {"a": Infinity}}', "not_finite"),
        (b'{"x": {"a": -Infinity}}', "not_finite"),
        (b'{"x": {"a": 1}, "y": NaN}', "not_finite"),
        # valid JSON numbers that overflow a float
        (b'{"x": {"a": 1e999}}', "not_finite"),
        (b'{"x": {"a": -1e999}}', "not_finite"),
        (b'{"x": {"a": 1}, "y": 1e999}', "not_finite"),
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
    assert result.detail


def test_label_type_is_fixed_by_the_first_label():
    decoder = Decoder()
    assert isinstance(decoder.decode(b'{"x": {"a": 1}, "y": 1}'), Event)
    assert isinstance(decoder.decode(b'{"x": {"a": 1}}'), Event)  # unlabelled: no effect
    assert decoder.decode(b'{"x": {"a": 1}, "y": "1"}').reason == "label_type"
    assert decoder.decode(b'{"x": {"a": 1}, "y": true}').reason == "label_type"
    assert isinstance(decoder.decode(b'{"x": {"a": 1}, "y": 0.5}'), Event)  # int, float: numbers


def test_bool_labels_are_not_numbers():
    decoder = Decoder()
    assert isinstance(decoder.decode(b'{"x": {"a": 1}, "y": false}'), Event)
    assert decoder.decode(b'{"x": {"a": 1}, "y": 0}').reason == "label_type"
    assert isinstance(decoder.decode(b'{"x": {"a": 1}, "y": true}'), Event)


def test_a_rejected_label_does_not_fix_the_type():
    decoder = Decoder()
    assert decoder.decode(b'{"x": {"a": null}, "y": "up"}').reason == "bad_feature"
    assert isinstance(decoder.decode(b'{"x": {"a": 1}, "y": 1}'), Event)


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


@pytest.mark.parametrize("v", FLOATS)
def test_round_trip_of_floats_is_exact(v):
    event = decode(encode({"a": v, "é ü": -v}, v))
    assert event.x["a"].hex() == v.hex()
    assert event.x["é ü"].hex() == (-v).hex()
    assert event.y.hex() == v.hex()


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@settings(max_examples=300, deadline=None, database=None)
@given(x=st.dictionaries(st.text(), scalars), y=st.none() | scalars, event_id=st.none() | st.text())
def test_round_trip(x, y, event_id):
    event = decode(encode(x, y, event_id))
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


LABELLED = Decoder()
LABELLED.decode(b'{"x": {}, "y": 0}')  # labels are numbers from now on
STRICT = Decoder(max_bytes=60, features={"": "number", "a": "string"}, allow_extra_features=False)


@settings(
    max_examples=10_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(payloads)
def test_decode_never_raises(value):
    for decoder in (Decoder(), LABELLED, STRICT):
        result = decoder.decode(value)
        assert isinstance(result, Event | Rejection)
        if isinstance(result, Rejection):
            assert result.reason and isinstance(result.detail, str)
            continue
        assert type(result.x) is dict
        assert all(type(k) is str and is_finite_scalar(v) for k, v in result.x.items())
        assert result.y is None or is_finite_scalar(result.y)
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
