"""Streams of (x, y) pairs: a CSV file (plain or gzipped), the bundled Elec2, or a synthetic
River stream with known drifts. `publish` and `evaluate` read them the same way, so both see the
very same values.
"""

from __future__ import annotations

import collections
import csv
import gzip
import io
import itertools
import math
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from driftline.errors import DataError

Row = tuple[dict[str, Any], Any]

BUNDLED = {"elec": ("elec.csv.gz", "class")}
SYNTHETIC = ("sea", "agrawal", "hyperplane", "stationary")


_EXACT = 2.0**53  # whole floats below this are exactly the integer they print as
_BOOLS = {"true": True, "false": False}


def _scalar(text: str) -> Any:
    """A CSV cell as a value: "true"/"false" (any case) a boolean, a number a number (an int when
    it is whole), anything else the string itself; None for an empty cell or a number that is not
    finite (a missing value: the feature is left out of the event)."""
    try:
        value = float(text)
    except ValueError:
        if not text:
            return None
        if len(text) <= 5 and (b := _BOOLS.get(text.lower())) is not None:
            return b
        return text
    if "_" in text:  # float() reads "1_000" as 1000.0; a CSV means the text
        return text
    if value.is_integer():
        if -_EXACT < value < _EXACT:
            return int(value)
        try:
            return int(text)  # a large integer, exactly
        except ValueError:
            return value
    return value if value - value == 0.0 else None  # NaN and infinities are missing


_MISS = object()


def _cached(read: Any, size: int = 65_536) -> Any:
    """`read` with a memo of its first `size` distinct cells: categorical and small integer
    columns repeat the same few texts, which then cost a dict look-up instead of a parse."""
    memo: dict[str, Any] = {}

    def cell(text: str) -> Any:
        value = memo.get(text, _MISS)
        if value is _MISS:
            value = read(text)
            if len(memo) < size:
                memo[text] = value
        return value

    return cell


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: UTF-8 that drops a leading byte-order mark, which spreadsheets write and which
    # would otherwise become part of the first column's name
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # closed by the caller


def read_csv(path: str | Path, target: str, limit: int | None = None) -> Iterator[Row]:
    """(x, y) per row, cells read by `_scalar`: an empty feature cell leaves the feature out, an
    empty target cell means no label, and a target that is a number but not a whole one is a
    `DataError` (it is not a classification label)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--csv: no such file: {path}")
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty") from None
        except (UnicodeDecodeError, OSError, csv.Error) as exc:
            raise DataError(f"{path}: cannot read: {exc}") from None
        twice = sorted(name for name, n in collections.Counter(header).items() if n > 1)
        if twice:  # the later column would silently take the earlier one's place in each event
            raise DataError(f"{path}: the header names {', '.join(map(repr, twice))} more than "
                            "once; each column needs a name of its own")
        if target not in header:
            hint = ""
            if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
                hint = "; the header reads as one column: is the file separated by commas?"
            raise DataError(
                f"--target: column {target!r} is not in {path} (columns: {', '.join(header)})"
                + hint
            )
        t = header.index(target)
        names = [name for i, name in enumerate(header) if i != t]
        width = len(header)
        scalar = _cached(_scalar)
        rows = reader if limit is None else itertools.islice(reader, limit)
        try:
            for row in rows:
                if len(row) != width:
                    if not row:
                        continue  # a blank line
                    raise DataError(
                        f"{path}:{reader.line_num}: {len(row)} cells, the header has {width}"
                    )
                y = scalar(row.pop(t))
                if type(y) is float:
                    raise DataError(
                        f"{path}:{reader.line_num}: target {target!r} is {y!r}, a number that is "
                        "not whole, so not a classification label (regression is not supported)"
                    )
                values = list(map(scalar, row))
                if None in values:  # missing cells: those features are left out
                    pairs = zip(names, values, strict=True)
                    yield {name: v for name, v in pairs if v is not None}, y
                else:
                    yield dict(zip(names, values, strict=True)), y
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}: cannot read: {exc}") from None


def bundled(name: str, limit: int | None = None) -> Iterator[Row]:
    """A data set shipped inside the package (see driftline/data/README.md)."""
    if name not in BUNDLED:
        raise DataError(f"--dataset: unknown data set {name!r}; known: {', '.join(BUNDLED)}")
    filename, target = BUNDLED[name]
    with resources.as_file(resources.files("driftline.data") / filename) as path:
        yield from read_csv(path, target, limit)


def _concepts(streams: list[Any], positions: list[int], width: int, n: int,
              seed: int) -> Iterator[Row]:
    """`n` events from a sequence of concepts: past the k-th position, concept k + 1 takes over
    with probability sigmoid(4 (t - position) / width), as in River's ConceptDriftStream (whose
    own sigmoid overflows on long streams).
    """
    rng = random.Random(seed)
    sources = [iter(s) for s in streams]
    for t in range(n):
        k = 0
        for i, position in enumerate(positions):
            z = max(-50.0, min(50.0, 4.0 * (t - position) / width))
            if rng.random() < 1.0 / (1.0 + math.exp(-z)):
                k = i + 1
        x, y = next(sources[k])
        yield dict(x), int(y)


def synthetic(name: str, n: int, seed: int = 42) -> Iterator[Row]:
    """A River stream of `n` events with drifts at known positions (see `drift_points`)."""
    from river.datasets import synth

    if name == "sea":  # abrupt drifts: the SEA variant changes at each quarter
        q = n // 4
        parts = [synth.SEA(variant=v, seed=seed + v).take(q if v < 3 else n - 3 * q)
                 for v in range(4)]
        for x, y in itertools.chain.from_iterable(parts):
            yield dict(x), int(y)
    elif name == "agrawal":  # gradual drifts between classification functions, 1,000 wide
        concepts = [synth.Agrawal(classification_function=f, seed=seed + i)
                    for i, f in enumerate((0, 2, 4))]
        yield from _concepts(concepts, drift_points("agrawal", n), 1000, n, seed)
    elif name == "hyperplane":  # incremental drift
        stream = synth.Hyperplane(seed=seed, n_features=10, n_drift_features=2, mag_change=0.001)
        for x, y in stream.take(n):
            yield dict(x), int(y)
    elif name == "stationary":
        for x, y in synth.Agrawal(classification_function=1, seed=seed).take(n):
            yield dict(x), int(y)
    else:
        raise DataError(f"--synthetic: unknown stream {name!r}; known: {', '.join(SYNTHETIC)}")


def drift_points(name: str, n: int) -> list[int]:
    """Event indices where the synthetic stream `name` of length `n` changes concept."""
    if name == "sea":
        return [n // 4, 2 * (n // 4), 3 * (n // 4)]
    if name == "agrawal":
        return [n // 3, 2 * (n // 3)]
    return []
