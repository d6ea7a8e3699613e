"""Streams of (x, y) pairs: a CSV file (plain or gzipped), the bundled Elec2, or a synthetic
River stream with known drifts. `publish` and `evaluate` read them the same way, so both see the
very same values.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from driftline.errors import DataError

Row = tuple[dict[str, Any], Any]

BUNDLED = {"elec": ("elec.csv.gz", "class")}
SYNTHETIC = ("sea", "agrawal", "hyperplane", "stationary")


def _scalar(text: str) -> Any:
    """A CSV cell as int, float or, failing both, the string itself."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")  # closed by the caller


def read_csv(path: str | Path, target: str, limit: int | None = None) -> Iterator[Row]:
    """(x, y) per row; numeric cells become numbers, an empty target means no label."""
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
        if target not in header:
            raise DataError(
                f"--target: column {target!r} is not in {path} (columns: {', '.join(header)})"
            )
        t = header.index(target)
        features = [(i, name) for i, name in enumerate(header) if i != t]
        rows = reader if limit is None else itertools.islice(reader, limit)
        try:
            for n, row in enumerate(rows, start=2):
                if len(row) != len(header):
                    raise DataError(f"{path}:{n}: {len(row)} cells, the header has {len(header)}")
                x = {name: _scalar(row[i]) for i, name in features}
                y = _scalar(row[t]) if row[t] != "" else None
                yield x, y
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}: cannot read: {exc}") from None


def bundled(name: str, limit: int | None = None) -> Iterator[Row]:
    """A data set shipped inside the package (see driftline/data/README.md)."""
    if name not in BUNDLED:
        raise DataError(f"--dataset: unknown data set {name!r}; known: {', '.join(BUNDLED)}")
    filename, target = BUNDLED[name]
    with resources.as_file(resources.files("driftline.data") / filename) as path:
        yield from read_csv(path, target, limit)


def bundled_path(name: str) -> Path:
    filename, _ = BUNDLED[name]
    return Path(str(resources.files("driftline.data") / filename))


def synthetic(name: str, n: int, seed: int = 42) -> Iterator[Row]:
    """A River stream of `n` events with drifts at known positions (see `drift_points`)."""
    from river import datasets
    from river.datasets import synth

    stream: Any
    if name == "sea":  # abrupt drifts: variant changes every quarter
        q = n // 4
        stream = synth.ConceptDriftStream(
            synth.SEA(variant=0, seed=seed),
            synth.ConceptDriftStream(
                synth.SEA(variant=1, seed=seed + 1),
                synth.ConceptDriftStream(
                    synth.SEA(variant=2, seed=seed + 2),
                    synth.SEA(variant=3, seed=seed + 3),
                    position=q, width=1, seed=seed,
                ),
                position=q, width=1, seed=seed,
            ),
            position=q, width=1, seed=seed,
        )
    elif name == "agrawal":  # gradual drifts between classification functions
        q = n // 3
        stream = synth.ConceptDriftStream(
            synth.Agrawal(classification_function=0, seed=seed),
            synth.ConceptDriftStream(
                synth.Agrawal(classification_function=2, seed=seed + 1),
                synth.Agrawal(classification_function=4, seed=seed + 2),
                position=q, width=1000, seed=seed,
            ),
            position=q, width=1000, seed=seed,
        )
    elif name == "hyperplane":  # incremental drift
        stream = synth.Hyperplane(seed=seed, n_features=10, n_drift_features=2, mag_change=0.001)
    elif name == "stationary":
        stream = synth.Agrawal(classification_function=1, seed=seed)
    else:
        raise DataError(f"--synthetic: unknown stream {name!r}; known: {', '.join(SYNTHETIC)}")
    del datasets
    for x, y in stream.take(n):
        yield dict(x), (int(y) if isinstance(y, bool) else y)


def drift_points(name: str, n: int) -> list[int]:
    """Event indices where the synthetic stream `name` of length `n` changes concept."""
    if name == "sea":
        return [n // 4, 2 * (n // 4), 3 * (n // 4)]
    if name == "agrawal":
        return [n // 3, 2 * (n // 3)]
    return []
