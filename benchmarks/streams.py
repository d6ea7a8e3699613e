"""The streams of the drift benchmark suite (benchmarks/drift.py), generated in memory.

Every stream is a list of (x, y) rows, seeded, so every run sees the very same events. Feature
names are strings (River's integer keys `0, 1, ...` become `x0, x1, ...`) so that the CSV header
driftline reads names the same features the River baselines see. Values are kept as the
generator yields them (numbers, booleans, strings); `write_csv` writes booleans as `true`/`false`
and strings as they are.

- elec: Elec2, bundled with driftline (45,312 events; real, drifts at unknown points).
- phishing: River's Phishing data set (1,250 events; real).
- sea: SEA, 10 % label noise, variants 0 -> 1 -> 2 -> 3, abrupt drifts at each quarter.
- agrawal: Agrawal, classification functions 1 -> 4 -> 7, gradual drifts (1,000 events wide)
  at each third.
- hyperplane: rotating hyperplane, 10 features of which 5 drift (magnitude 0.001, 5 % noise):
  incremental drift, no single drift point.
- rbf: RandomRBFDrift, 5 classes, 10 features, 50 centroids all moving (speed 0.001):
  incremental drift.
- led: LEDDrift, 10 classes, 10 % noise, 17 irrelevant attributes; the number of swapped
  (drifting) attributes goes 1 -> 3 -> 5 -> 7, abrupt drifts at each quarter.
- stagger: STAGGER with string features (size small/medium/large, color red/blue/green, shape
  circle/square/triangle), classification functions 0 -> 1 -> 2, abrupt drifts at each third.
- sine: Sine, classification functions 0 -> 1 -> 2 -> 3 (1 and 3 are 0 and 2 reversed), abrupt
  drifts at each quarter.
- imagesegments: River's ImageSegments data set (2,310 events, 7 string classes, 18 numeric
  features; real). Not tuned on: added after the default set was chosen, as a check.
- bananas: River's Bananas data set (5,300 events, 2 features, a nonlinear boundary). Also a
  check added after the default set was chosen.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = tuple[dict[str, Any], Any]

SEED = 42
EVENTS = 30_000  # synthetic streams; the real ones are used whole
GRADUAL_WIDTH = 1_000


@dataclass(frozen=True)
class Stream:
    name: str
    description: str
    classes: int  # 2: binary
    real: bool  # a data set (used whole unless --events is smaller), not a generator
    make: Callable[[int, int], Iterable[Row]]  # (events, seed) -> rows
    drifts: Callable[[int], list[int]]  # events -> known drift points ([] if none/unknown)
    strings: bool = False  # has string features (the baselines one-hot encode them)


def _named(x: dict[Any, Any]) -> dict[str, Any]:
    return {(f"x{k}" if isinstance(k, int) else str(k)): v for k, v in x.items()}


def _abrupt(concepts: list[Iterable[Row]], n: int) -> Iterator[Row]:
    """`n` events, concept k over the k-th of len(concepts) equal parts (the last takes the
    remainder): abrupt drifts at exactly `_parts(n, len(concepts))`."""
    points = _parts(n, len(concepts))
    bounds = [0, *points, n]
    for k, concept in enumerate(concepts):
        yield from itertools.islice(iter(concept), bounds[k + 1] - bounds[k])


def _gradual(concepts: list[Iterable[Row]], n: int, width: int, seed: int) -> Iterator[Row]:
    """`n` events; past the k-th drift point, concept k + 1 takes over with probability
    sigmoid(4 (t - point) / width), as in River's `ConceptDriftStream` (whose `math.exp`
    overflows for points far from the start). Each concept's generator advances only when it
    is drawn from."""
    rng = random.Random(seed)
    points = _parts(n, len(concepts))
    sources = [iter(c) for c in concepts]
    for t in range(n):
        k = 0
        for i, p in enumerate(points):
            z = max(-50.0, min(50.0, 4.0 * (t - p) / width))
            if rng.random() < 1.0 / (1.0 + math.exp(-z)):
                k = i + 1
        yield next(sources[k])


def _parts(n: int, k: int) -> list[int]:
    """The k - 1 points that cut n events into k equal parts."""
    return [i * n // k for i in range(1, k)]


def _elec(n: int, seed: int) -> Iterator[Row]:
    from driftline.datasets import bundled

    return itertools.islice(bundled("elec"), n)


def _phishing(n: int, seed: int) -> Iterator[Row]:
    from river import datasets

    for x, y in itertools.islice(datasets.Phishing(), n):
        yield _named(x), y


def _imagesegments(n: int, seed: int) -> Iterator[Row]:
    from river import datasets

    for x, y in itertools.islice(datasets.ImageSegments(), n):
        yield _named(x), y


def _bananas(n: int, seed: int) -> Iterator[Row]:
    from river import datasets

    for x, y in itertools.islice(datasets.Bananas(), n):
        yield _named(x), y


def _sea(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    concepts = [synth.SEA(variant=v, noise=0.1, seed=seed + v) for v in range(4)]
    for x, y in _abrupt(concepts, n):
        yield _named(x), y


def _agrawal(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    concepts = [
        synth.Agrawal(classification_function=f, seed=seed + i) for i, f in enumerate((1, 4, 7))
    ]
    for x, y in _gradual(concepts, n, GRADUAL_WIDTH, seed):
        yield _named(x), y


def _hyperplane(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    stream = synth.Hyperplane(
        seed=seed, n_features=10, n_drift_features=5, mag_change=0.001, noise_percentage=0.05
    )
    for x, y in stream.take(n):
        yield _named(x), y


def _rbf(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    stream = synth.RandomRBFDrift(
        seed_model=seed,
        seed_sample=seed + 1,
        n_classes=5,
        n_features=10,
        n_centroids=50,
        change_speed=0.001,
        n_drift_centroids=50,
    )
    for x, y in stream.take(n):
        yield _named(x), y


def _led(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    concepts = [
        synth.LEDDrift(
            seed=seed + i, noise_percentage=0.1, irrelevant_features=True, n_drift_features=d
        )
        for i, d in enumerate((1, 3, 5, 7))
    ]
    for x, y in _abrupt(concepts, n):
        yield _named(x), y


def _stagger(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    concepts = [synth.STAGGER(classification_function=f, seed=seed + f) for f in range(3)]
    labels = {
        "size": concepts[0].size_labels,
        "color": concepts[0].color_labels,
        "shape": concepts[0].shape_labels,
    }
    for x, y in _abrupt(concepts, n):
        yield {k: labels[k][v] for k, v in x.items()}, y


def _sine(n: int, seed: int) -> Iterator[Row]:
    from river.datasets import synth

    concepts = [synth.Sine(classification_function=f, seed=seed + f) for f in range(4)]
    for x, y in _abrupt(concepts, n):
        yield _named(x), y


def _none(n: int) -> list[int]:
    return []


STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream("elec", "Elec2 (bundled with driftline; real)", 2, True, _elec, _none),
        Stream("phishing", "Phishing (River's data set; real)", 2, True, _phishing, _none),
        Stream(
            "sea",
            "SEA, 10 % label noise, variants 0 -> 1 -> 2 -> 3, abrupt drifts",
            2, False, _sea, lambda n: _parts(n, 4),
        ),
        Stream(
            "agrawal",
            "Agrawal, functions 1 -> 4 -> 7, gradual drifts (1,000 events wide)",
            2, False, _agrawal, lambda n: _parts(n, 3),
        ),
        Stream(
            "hyperplane",
            "Hyperplane, 10 features, 5 drifting (magnitude 0.001), 5 % noise: incremental "
            "drift",
            2, False, _hyperplane, _none,
        ),
        Stream(
            "rbf",
            "RandomRBFDrift, 5 classes, 10 features, 50 centroids all moving (speed 0.001): "
            "incremental drift",
            5, False, _rbf, _none,
        ),
        Stream(
            "led",
            "LEDDrift, 10 classes, 10 % noise, 17 irrelevant attributes, 1 -> 3 -> 5 -> 7 "
            "swapped attributes, abrupt drifts",
            10, False, _led, lambda n: _parts(n, 4),
        ),
        Stream(
            "stagger",
            "STAGGER with string features, functions 0 -> 1 -> 2, abrupt drifts",
            2, False, _stagger, lambda n: _parts(n, 3), strings=True,
        ),
        Stream(
            "sine",
            "Sine, functions 0 -> 1 -> 2 -> 3 (1 and 3 are 0 and 2 reversed), abrupt drifts",
            2, False, _sine, lambda n: _parts(n, 4),
        ),
        Stream("imagesegments", "ImageSegments (River's data set; real), 7 classes", 7, True,
               _imagesegments, _none),
        Stream("bananas", "Bananas (River's data set), a nonlinear boundary", 2, True,
               _bananas, _none),
    )
}


def load(name: str, events: int | None = None, seed: int = SEED) -> list[Row]:
    """The rows of stream `name`: `events` of them (default: 30,000 for a synthetic stream, the
    whole data set for a real one; a real one is never longer than itself)."""
    stream = STREAMS[name]
    if stream.real:
        n = events if events is not None else 10**9
    else:
        n = events if events is not None else EVENTS
    return [(dict(x), y) for x, y in stream.make(n, seed)]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)  # repr-exact for floats


def write_csv(rows: list[Row], path: Path, target: str = "y") -> Path:
    """Write `rows` with a header row (the features in order of first appearance, then
    `target`); booleans as `true`/`false`, strings as they are, a missing feature empty."""
    columns: dict[str, None] = {}
    for x, _ in rows:
        for k in x:
            columns.setdefault(k, None)
    if target in columns:
        raise ValueError(f"a feature is named like the target column {target!r}")
    names = list(columns)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*names, target])
        for x, y in rows:
            writer.writerow([*(_cell(x.get(k)) for k in names), _cell(y)])
    return path
