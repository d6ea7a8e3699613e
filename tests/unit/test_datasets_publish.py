"""Streams of (x, y): CSV files, the bundled Elec2, synthetic drifts; and `publish`."""

import gzip
import itertools

import pytest

from consumers.wire import Decoder, Event
from driftline.datasets import bundled, drift_points, read_csv, synthetic
from driftline.errors import DataError
from driftline.publish import paced, publish

CSV = "name,size,ratio,label\nalpha,3,0.25,yes\nbeta,-7,1e3,\ngamma,0,-0.5,no\n"
EXPECTED = [
    ({"name": "alpha", "size": 3, "ratio": 0.25}, "yes"),
    ({"name": "beta", "size": -7, "ratio": 1000.0}, None),
    ({"name": "gamma", "size": 0, "ratio": -0.5}, "no"),
]


def test_read_csv_converts_numbers_and_keeps_strings(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(CSV, encoding="utf-8")
    rows = list(read_csv(path, "label"))
    assert rows == EXPECTED
    assert [type(v) for v in rows[0][0].values()] == [str, int, float]


def test_read_csv_numeric_labels_and_limit(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,y\n1.5,1\n2.5,0\n3.5,1\n", encoding="utf-8")
    assert list(read_csv(path, "y", limit=2)) == [({"a": 1.5}, 1), ({"a": 2.5}, 0)]


def test_read_csv_gz(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(CSV)
    assert list(read_csv(path, "label")) == EXPECTED


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("", "y", "empty"),
        ("a,b\n1,2\n", "y", "column 'y'"),
        ("a,y\n1,2\n3\n", "y", ":3: 1 cells"),
        ("a,b,a,y\n1,2,3,0\n", "y", "names 'a' more than once"),
        ("a;b;y\n1;2;0\n", "y", "one column: is the file separated by commas"),
    ],
)
def test_read_csv_errors(tmp_path, text, target, message):
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        list(read_csv(path, target))


def test_read_csv_drops_a_byte_order_mark(tmp_path):
    """Spreadsheets write UTF-8 with a byte-order mark: not part of the first column's name."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfy,a\n1,0.5\n0,0.25\n")
    assert list(read_csv(path, "y")) == [({"a": 0.5}, 1), ({"a": 0.25}, 0)]


def test_read_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(read_csv(tmp_path / "absent.csv", "y"))


def test_bundled_elec():
    n = 0
    labels = set()
    for x, y in bundled("elec"):
        n += 1
        labels.add(y)
        assert len(x) == 6
    assert n == 45_312
    assert labels == {0, 1}
    first_x, first_y = next(bundled("elec"))
    assert set(first_x) == {"period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"}
    assert all(type(v) in (int, float) and 0.0 <= v <= 1.0 for v in first_x.values())
    assert first_x["period"] == 0 and type(first_x["period"]) is int  # "0.0": a whole number
    assert first_y == 1


def test_bundled_unknown():
    with pytest.raises(DataError, match="unknown data set"):
        list(bundled("iris"))


@pytest.mark.parametrize("n", [700, 1000, 100_000])
def test_synthetic_is_deterministic(n):
    first = list(synthetic("sea", n, seed=5))
    assert len(first) == n
    assert list(synthetic("sea", n, seed=5)) == first
    assert list(synthetic("sea", n, seed=6)) != first
    assert {y for _, y in first} == {0, 1}  # River's bool labels become ints
    assert all(type(y) is int for _, y in first)


def test_synthetic_unknown():
    with pytest.raises(DataError, match="unknown stream"):
        list(synthetic("waves", 10))


@pytest.mark.parametrize("n", [700, 4000])
def test_sea_drift_points_are_where_the_concept_changes(n):
    points = drift_points("sea", n)
    q = n // 4
    assert points == [q, 2 * q, 3 * q]
    thresholds = [8, 9, 7, 9.5]  # SEA variants 0..3: y = x0 + x1 > threshold
    rows = list(synthetic("sea", n, seed=1))
    bounds = [0, *points, n]
    for threshold, (start, end) in zip(thresholds, itertools.pairwise(bounds), strict=True):
        segment = rows[start + 5 : end - 5]  # the switch is random within a couple of events
        assert all(y == int(x[0] + x[1] > threshold) for x, y in segment), threshold


def test_drift_points_of_other_streams():
    assert drift_points("agrawal", 3000) == [1000, 2000]
    assert drift_points("stationary", 3000) == []


@pytest.mark.parametrize("name", ["agrawal", "hyperplane", "stationary"])
def test_other_synthetic_streams(name):
    rows = list(synthetic(name, 50))
    assert len(rows) == 50
    assert all(isinstance(x, dict) and x for x, _ in rows)


# --- publish ------------------------------------------------------------------------------

ROWS = [({"a": 0.1, "b": "red"}, 1), ({"a": 1 / 3, "b": "blue"}, 0), ({"a": -2.0, "b": ""}, None)]


def decode_all(sent):
    decoder = Decoder()
    events = [decoder.decode(value) for value in sent]
    assert all(isinstance(e, Event) for e in events)
    return [(e.x, e.y) for e in events]


def test_publish_loops_up_to_the_limit():
    sent = []
    n = publish(lambda v, k: sent.append(v), iter(ROWS), limit=8, loop=True)
    assert n == 8
    assert decode_all(sent) == list(itertools.islice(itertools.cycle(ROWS), 8))


def test_publish_without_loop_stops_at_the_end():
    sent = []
    assert publish(lambda v, k: sent.append(v), iter(ROWS), limit=8) == 3
    assert decode_all(sent) == ROWS


def test_publish_limit_without_loop():
    sent = []
    assert publish(lambda v, k: sent.append(v), iter(ROWS), limit=2) == 2
    assert decode_all(sent) == ROWS[:2]


def test_publish_stops_when_asked():
    sent = []
    n = publish(lambda v, k: sent.append(v), iter(ROWS), loop=True,
                should_stop=lambda: len(sent) >= 5)
    assert n == 5 == len(sent)


def test_published_elec_decodes_to_the_same_rows():
    rows = list(bundled("elec", limit=100))
    sent = []
    publish(lambda v, k: sent.append(v), iter(rows))
    assert decode_all(sent) == rows


def test_paced_keeps_order():
    assert list(paced(range(25), None)) == list(range(25))
    assert list(paced(range(25), 1e6)) == list(range(25))


def test_read_csv_booleans_whole_numbers_and_missing_cells(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        "flag,n,v,s,y\n"
        "true,2.0,0.5,x,TRUE\n"
        "False,,1e2,1_000,3.0\n"
        "tRuE,nan,-0.0,,\n"
        ",12345678901234567890,inf,truthy,up\n",
        encoding="utf-8",
    )
    rows = list(read_csv(path, "y"))
    assert rows == [
        ({"flag": True, "n": 2, "v": 0.5, "s": "x"}, True),
        ({"flag": False, "v": 100, "s": "1_000"}, 3),  # an empty cell: the feature is absent
        ({"flag": True, "v": 0}, None),  # an empty target: unlabelled; nan: missing
        ({"n": 12345678901234567890, "s": "truthy"}, "up"),  # exact; inf: missing
    ]
    assert type(rows[0][0]["n"]) is int and type(rows[1][1]) is int
    assert rows[0][0]["flag"] is True and rows[0][1] is True


def test_read_csv_a_target_that_is_not_a_class_is_a_data_error(tmp_path, capsys):
    from driftline.cli import main

    path = tmp_path / "data.csv"
    path.write_text("a,y\n1,0\n2,0.5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r":3: target 'y' is 0\.5.*not a classification label"):
        list(read_csv(path, "y"))
    assert main(["evaluate", "--csv", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a classification label" in err


def test_every_csv_row_is_an_event_the_decoder_accepts_unchanged(tmp_path):
    from consumers.wire import encode

    for x, y in itertools.islice(bundled("elec"), 500):
        assert Decoder().decode(encode(x, y)) == Event(x, y)
