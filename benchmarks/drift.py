"""Drift benchmark suite: how the ensemble and each drift response fare on drifting streams.

Streams (seeded, so every run sees the same events):

- elec: the bundled Elec2 data set (real; drifts at unknown points);
- sea: SEA with three abrupt drifts, at each quarter;
- agrawal: Agrawal with two gradual drifts (1,000 events wide), at each third;
- hyperplane: a rotating hyperplane (incremental drift, no single drift point);
- stationary: Agrawal's function 1, no drift at all.

For each stream and each response (`none`, `reset`, `reweight`), with every other setting as
configured (the built-in defaults, or `--config`), it reports the ensemble's prequential
accuracy, its best member's, the mean accuracy over the 1,000 events after each known drift, the
delay from each known drift to the first detection by any member (within 5,000 events, else
"missed"), the false alarms per 100,000 events (detections not within 5,000 events after a known
drift, or within half a transition width before a gradual one's centre) and the events per second
of the pipeline alone (the streams are generated before the clock starts). Not a test: it prints
the table and, with --write, writes it into docs/benchmarks.md.

With --presets it instead runs each model preset alone (no detector) on every stream: the
candidates the default model set was chosen from (docs/drift.md).

    python benchmarks/drift.py [--write] [--config FILE] [--stream NAME ...] [--response R ...]
    python benchmarks/drift.py --presets [--stream NAME ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import river
from pipeline.core import ENSEMBLE

from driftline.config import DriftSettings, ModelSpec, Settings, load_settings
from driftline.datasets import bundled, drift_points, synthetic
from pipeline import Pipeline, build_pipeline
from pipeline.drift import DEFAULT_PARAMS

SEED = 42
HORIZON = 5_000  # a detection later than this after a known drift does not count for it
AFTER = 1_000  # events after a known drift over which the recovery is measured
RESPONSES = ("none", "reset", "reweight")
# name: (events, transition width of its known drifts)
STREAMS: dict[str, tuple[int | None, int]] = {
    "elec": (None, 0),
    "sea": (100_000, 0),
    "agrawal": (100_000, 1_000),
    "hyperplane": (100_000, 0),
    "stationary": (200_000, 0),
}
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

Row = tuple[dict[str, Any], Any]


def load_stream(name: str) -> list[Row]:
    n, _ = STREAMS[name]
    if n is None:
        return list(bundled(name))
    return list(synthetic(name, n, seed=SEED))


def known_drifts(name: str, n: int) -> list[int] | None:
    """The known drift points; None where they are unknown (real data, incremental drift)."""
    if name in ("elec", "hyperplane"):
        return None
    return drift_points(name, n)


def run(
    rows: list[Row], points: list[int] | None, width: int, pipeline: Pipeline
) -> dict[str, Any]:
    """Feed `rows` to `pipeline`; the figures of one table row."""
    detections: list[int] = []
    on_drift = pipeline._on_drift

    def recording(member: Any, step: int) -> None:  # called only on a drift: free otherwise
        detections.append(step)
        on_drift(member, step)

    pipeline._on_drift = recording  # type: ignore[method-assign]
    hits = bytearray(len(rows))
    process = pipeline.process
    start = time.perf_counter()
    for i, (x, y) in enumerate(rows):
        if process(x, y) == y:
            hits[i] = 1
    seconds = time.perf_counter() - start
    del pipeline._on_drift

    n = len(rows)
    stats = pipeline.snapshot()
    members = {name: s.accuracy or 0.0 for name, s in stats.items() if name != ENSEMBLE}
    best = max(members, key=members.__getitem__)
    out: dict[str, Any] = {
        "events": n,
        "accuracy": stats[ENSEMBLE].accuracy or 0.0,
        "members": members,
        "best": best,
        "detections": len(detections),
        "events_per_second": n / seconds,
        "after": None,
        "delays": None,
        "false_alarms": None,
    }
    if points is None:
        return out
    if points:
        out["after"] = sum(sum(hits[p : p + AFTER]) / len(hits[p : p + AFTER]) for p in points)
        out["after"] /= len(points)
    delays: list[int | None] = []
    for p in points:
        later = [d - p for d in detections if p <= d < p + HORIZON]
        delays.append(min(later) if later else None)
    out["delays"] = delays
    false = [
        d for d in detections if not any(p - width // 2 <= d < p + HORIZON for p in points)
    ]
    out["false_alarms"] = len(false) * 100_000 / n
    return out


def fmt_delays(delays: list[int | None] | None) -> str:
    if delays is None:
        return "n/a"
    if not delays:
        return "(no drift)"
    return ", ".join("missed" if d is None else f"{d:,}" for d in delays)


def table(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    head = (
        "| stream | response | accuracy | best member | post-drift accuracy "
        "| detection delay (events) | false alarms / 100k | detections / 100k | events/s |\n"
        "| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: |\n"
    )
    lines = []
    for (stream, response), r in results.items():
        best = f"{r['best']} {r['members'][r['best']]:.4f}"
        after = "n/a" if r["after"] is None else f"{r['after']:.4f}"
        fa = "n/a" if r["false_alarms"] is None else f"{r['false_alarms']:.1f}"
        lines.append(
            f"| {stream} ({r['events']:,}) | {response} | {r['accuracy']:.4f} | {best} | {after} "
            f"| {fmt_delays(r['delays'])} | {fa} | {r['detections'] * 100_000 / r['events']:.1f} "
            f"| {r['events_per_second']:,.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def members_table(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    names = list(next(iter(results.values()))["members"])
    head = "| stream | response | ensemble | " + " | ".join(names) + " |\n"
    head += "| --- | --- | ---: | " + " | ".join("---:" for _ in names) + " |\n"
    lines = [
        f"| {stream} | {response} | {r['accuracy']:.4f} | "
        + " | ".join(f"{r['members'][n]:.4f}" for n in names)
        + " |"
        for (stream, response), r in results.items()
    ]
    return head + "\n".join(lines) + "\n"


def describe(settings: Settings) -> str:
    d = settings.drift
    models = ", ".join(f"`{m.name}` (`{m.model}`)" for m in settings.models)
    params = {**DEFAULT_PARAMS.get(d.detector, {}), **d.params}
    detector = ", ".join(f"{k} = {v!r}" for k, v in params.items()) or "River's defaults"
    fields = ", ".join(
        f"{f.name} = {getattr(d, f.name)}"
        for f in dataclasses.fields(d)
        if f.name not in ("detector", "response", "params")
    )
    return (
        f"Models: {models}. Detector: `{d.detector}` ({detector}). {fields}. "
        f"Rolling window: {settings.metrics.rolling_window}."
    )


def document(results: dict[tuple[str, str], dict[str, Any]], settings: Settings) -> str:
    def para(text: str) -> str:
        return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False)

    intro = para(
        f"""Written by `python benchmarks/drift.py --write`; every figure below comes from that
        run. The streams are seeded, so the accuracies and detection points repeat exactly;
        events/s depend on the machine and its load (this run: Python
        {platform.python_version()}, River {river.__version__}, one process)."""
    )
    config = para(
        f"""Configuration: the built-in defaults (`reweight` is the default response), with
        `[drift] response` set per row. {describe(settings)}"""
    )
    streams = para(
        f"""Streams: Elec2 (45,312 events, bundled); SEA with abrupt drifts at each quarter;
        Agrawal with gradual drifts (1,000 events wide) at each third (functions 0, 2, 4); a
        rotating hyperplane (10 features, 2 drifting, magnitude 0.001); a stationary stream
        (Agrawal function 1). Seed {SEED}. Why the defaults are what they are, and each preset
        alone on these streams: [drift.md](drift.md)."""
    )
    return f"""# Drift benchmarks

{intro}

{config}

- **accuracy**: the ensemble's (the served prediction's) prequential accuracy over the stream;
  **best member**: the member with the highest prequential accuracy on that run.
- **post-drift accuracy**: the ensemble's accuracy over the {AFTER:,} events after each known
  drift, averaged over the drifts.
- **detection delay**: for each known drift, events from the drift point to the first drift
  detected by any member, within {HORIZON:,} events ("missed" otherwise). Only rises of a
  member's error rate are drifts ([drift.md](drift.md)).
- **false alarms / 100k**: detections not within {HORIZON:,} events after a known drift (nor
  within half the transition width before the centre of a gradual drift), per 100,000 events.
  "n/a" where the drift points are unknown: Elec2 (real data) and the hyperplane (it drifts all
  the time, a little).
- **detections / 100k**: every detection, by any member, per 100,000 events.
- **events/s**: the pipeline alone (`Pipeline.process`), the stream generated beforehand.

{streams}

{table(results)}
## Every member

{members_table(results)}"""


# the presets --presets compares (adaptive_random_forest: about 1,300 events/s, left out)
PRESETS = (
    "passive_aggressive",
    "logistic_regression",
    "hoeffding_tree_fast",
    "hoeffding_tree",
    "hoeffding_adaptive_tree",
    "gaussian_nb",
    "no_change",
)


def presets_table(streams: list[str]) -> str:
    """Each preset alone: prequential accuracy per stream, and events/s on the first stream."""
    head = "| preset | " + " | ".join(streams) + f" | events/s ({streams[0]}) |\n"
    head += "| --- | " + " | ".join("---:" for _ in streams) + " | ---: |\n"
    cells: dict[str, list[str]] = {p: [] for p in PRESETS}
    speed: dict[str, float] = {}
    for stream in streams:
        rows = load_stream(stream)
        for preset in PRESETS:
            settings = Settings(
                models=(ModelSpec("m", preset),),
                drift=DriftSettings(detector="none", response="none"),
            )
            r = run(rows, None, 0, build_pipeline(settings))
            cells[preset].append(f"{r['accuracy']:.4f}")
            speed.setdefault(preset, r["events_per_second"])
            print(f"{preset} {stream} {r['accuracy']:.4f} {r['events_per_second']:,.0f}/s",
                  flush=True)
    lines = [
        f"| {p} | " + " | ".join(cells[p]) + f" | {speed[p]:,.0f} |" for p in PRESETS
    ]
    return head + "\n".join(lines) + "\n"


def keep_other_sections(text: str) -> str:
    """`text` followed by the sections ("## " headings) of the current file that `text` does
    not have: other benchmarks write theirs into the same page (benchmarks/hostile.py)."""
    if not DOC.exists():
        return text
    ours = {line for line in text.splitlines() if line.startswith("## ")}
    kept, keep = [], False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## ") or line.startswith("# "):
            keep = line.startswith("## ") and line not in ours
        if keep:
            kept.append(line)
    return text.rstrip("\n") + ("\n\n" + "\n".join(kept) + "\n" if kept else "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="TOML configuration (default: built-in)")
    parser.add_argument("--stream", action="append", choices=list(STREAMS))
    parser.add_argument("--response", action="append", choices=RESPONSES)
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--presets", action="store_true", help="each model preset alone")
    args = parser.parse_args(argv)
    if args.presets:
        print()
        print(presets_table(args.stream or list(STREAMS)))
        return 0
    if args.write and (args.config or args.stream or args.response):
        parser.error("--write documents the whole suite with the built-in defaults")
    base = load_settings(args.config)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for stream in args.stream or list(STREAMS):
        rows = load_stream(stream)
        points = known_drifts(stream, len(rows))
        for response in args.response or RESPONSES:
            settings = dataclasses.replace(
                base, drift=dataclasses.replace(base.drift, response=response)
            )
            r = run(rows, points, STREAMS[stream][1], build_pipeline(settings))
            results[(stream, response)] = r
            print(table({(stream, response): r}).splitlines()[-1], flush=True)
    print()
    print(table(results))
    print(members_table(results))
    if args.write:
        DOC.write_text(keep_other_sections(document(results, base)), encoding="utf-8")
        print(f"written: {DOC.relative_to(Path.cwd()) if DOC.is_relative_to(Path.cwd()) else DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
