"""Drift benchmark suite: driftline against River's baselines on drifting streams.

For each stream of benchmarks/streams.py (Elec2, Phishing, SEA, Agrawal, Hyperplane,
RandomRBFDrift, LEDDrift, STAGGER, Sine; seeded, 30,000 events per synthetic stream, the real
ones whole), on the very same rows in the same run:

- driftline, only through its command-line contract: the rows are written once to a CSV file
  (header row, target column `y`, booleans `true`/`false`, strings as they are) and
  `driftline evaluate --csv FILE --target y [--config FILE]` runs as a subprocess. Its JSON gives
  the ensemble's accuracy (the served prediction), every member's, and its learning rate,
  events / (seconds - read_seconds): the rows in memory, as the baselines' (the CSV parsing,
  `read_seconds`, is printed beside it);
- River's baselines on the rows as generated in memory, test-then-train (predict, score, learn;
  a prediction of None, before anything is learnt, is not scored): no-change, logistic regression
  (one-vs-rest for multiclass; strings one-hot encoded), Hoeffding tree, Hoeffding adaptive
  tree, adaptive random forest, leveraging bagging.

The baselines' results are cached in benchmarks/.cache/baselines.json, keyed by stream, events,
seed, a digest of the CSV and River's version, so comparing driftline configurations does not
rerun them (--no-cache measures them again). Not a test: it prints Markdown tables and the
command that made them; --write replaces the drift-suite section of docs/benchmarks.md.

    python benchmarks/drift.py [--config FILE] [--streams a,b] [--events N]
                               [--baselines no_change,lr,ht,hat,arf,levbag | none]
                               [--no-cache] [--no-driftline] [--csv-dir DIR] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import numbers
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import river
import streams
from river import (
    compose,
    dummy,
    ensemble,
    forest,
    linear_model,
    multiclass,
    preprocessing,
    tree,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
CACHE = Path(__file__).resolve().parent / ".cache" / "baselines.json"
BEGIN = "<!-- drift-suite:begin (written by benchmarks/drift.py --write) -->"
END = "<!-- drift-suite:end -->"
CACHE_VERSION = "v2"  # bump when the way the baselines are measured changes


def _lr(stream: streams.Stream) -> Any:
    if stream.strings:
        features = (
            compose.SelectType((numbers.Number,)) | preprocessing.StandardScaler()
        ) + (compose.SelectType((str,)) | preprocessing.OneHotEncoder())
    else:
        features = preprocessing.StandardScaler()
    if stream.classes > 2:
        return features | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
    return features | linear_model.LogisticRegression()


# name: (column heading, factory)
BASELINES: dict[str, tuple[str, Callable[[streams.Stream], Any]]] = {
    "no_change": ("no-change", lambda s: dummy.NoChangeClassifier()),
    "lr": ("LR", _lr),
    "ht": ("HT", lambda s: tree.HoeffdingTreeClassifier()),
    "hat": ("HAT", lambda s: tree.HoeffdingAdaptiveTreeClassifier(seed=1)),
    "arf": ("ARF", lambda s: forest.ARFClassifier(n_models=10, seed=1)),
    "levbag": (
        "LevBag",
        lambda s: ensemble.LeveragingBaggingClassifier(
            model=tree.HoeffdingTreeClassifier(), n_models=5, seed=1
        ),
    ),
}


def run_baseline(model: Any, rows: list[streams.Row]) -> dict[str, float]:
    """Test-then-train over `rows`: each event predicted, scored, then learnt. As River's
    `progressive_val_score` and driftline, a prediction of None (nothing learnt yet) is not
    scored."""
    hits = tested = 0
    predict, learn = model.predict_one, model.learn_one
    start = time.perf_counter()
    for x, y in rows:
        pred = predict(x)
        if pred is not None:
            tested += 1
            if pred == y:
                hits += 1
        learn(x, y)
    seconds = time.perf_counter() - start
    return {
        "accuracy": hits / tested if tested else 0.0,
        "tested": tested,
        "seconds": round(seconds, 6),
        "events_per_second": len(rows) / seconds,
    }


def driftline_command() -> list[str]:
    """The `driftline` program of this interpreter's environment (else on PATH)."""
    local = Path(sys.executable).parent / "driftline"
    if local.exists():
        return [str(local)]
    found = shutil.which("driftline")
    return [found] if found else [sys.executable, "-m", "driftline"]


def run_driftline(csv: Path, config: str | None) -> dict[str, Any]:
    cmd = [*driftline_command(), "evaluate", "--csv", str(csv), "--target", "y"]
    if config:
        cmd += ["--config", config]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no JSON report in: {proc.stdout[-200:]!r}"}
    models = {k: v for k, v in report["models"].items() if k != "ensemble"}
    accuracy = {k: (v.get("accuracy") or 0.0) for k, v in models.items()}
    # a member that raised and was set aside (if the report says so) is no candidate
    healthy = [k for k, v in models.items() if not v.get("failed")]
    best = max(healthy, key=accuracy.__getitem__) if healthy else None
    return {
        "events": report["events"],
        "seconds": report["seconds"],
        "read_seconds": report["read_seconds"],
        # the learning core's rate, the rows in memory as the baselines' (CSV parsing apart)
        "events_per_second": report["events"] / (report["seconds"] - report["read_seconds"]),
        "accuracy": report["models"]["ensemble"].get("accuracy") or 0.0,
        "drifts": report["models"]["ensemble"].get("drifts"),
        "members": accuracy,
        "failed": sorted(set(models) - set(healthy)),
        "best": best,
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_cache() -> dict[str, Any]:
    try:
        return json.loads(CACHE.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def save_cache(cache: dict[str, Any]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, CACHE)


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{r['accuracy']:.4f}"


def accuracy_table(results: dict[str, dict[str, Any]], baselines: list[str],
                   label: str) -> str:
    head = (
        f"| stream | {label} accuracy | best member | "
        + " | ".join(BASELINES[b][0] for b in baselines)
        + f" | best baseline | {label} - best | {label} events/s |\n"
        + "| --- | ---: | --- | " + " | ".join("---:" for _ in baselines)
        + " | --- | ---: | ---: |\n"
    )
    lines = []
    for name, r in results.items():
        d = r.get("driftline")
        base = {b: r["baselines"].get(b) for b in baselines}
        done = {b: v for b, v in base.items() if v is not None}
        best = max(done, key=lambda b: done[b]["accuracy"]) if done else None
        if d is None:
            dl, member, speed = "-", "-", "-"
        elif "error" in d:
            dl, member, speed = f"error: {d['error']}", "-", "-"
        else:
            dl = f"{d['accuracy']:.4f}"
            member = f"{d['best']} {d['members'][d['best']]:.4f}" if d["best"] else "-"
            speed = f"{d['events_per_second']:,.0f}"
        best_cell = f"{BASELINES[best][0]} {done[best]['accuracy']:.4f}" if best else "-"
        diff = (
            f"{d['accuracy'] - done[best]['accuracy']:+.4f}"
            if best and d is not None and "error" not in d
            else "-"
        )
        lines.append(
            f"| {name} ({r['events']:,}) | {dl} | {member} | "
            + " | ".join(cell(base[b]) for b in baselines)
            + f" | {best_cell} | {diff} | {speed} |"
        )
    return head + "\n".join(lines) + "\n"


def speed_table(results: dict[str, dict[str, Any]], baselines: list[str], label: str) -> str:
    head = (
        f"| stream | {label} | " + " | ".join(BASELINES[b][0] for b in baselines) + " |\n"
        + "| --- | ---: | " + " | ".join("---:" for _ in baselines) + " |\n"
    )
    lines = []
    for name, r in results.items():
        d = r.get("driftline")
        dl = f"{d['events_per_second']:,.0f}" if d and "error" not in d else "-"
        cells = [
            f"{r['baselines'][b]['events_per_second']:,.0f}" if r["baselines"].get(b) else "-"
            for b in baselines
        ]
        lines.append(f"| {name} | {dl} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def members_table(results: dict[str, dict[str, Any]]) -> str:
    names: list[str] = []
    for r in results.values():
        d = r.get("driftline")
        if d and "error" not in d:
            names += [n for n in d["members"] if n not in names]
    if not names:
        return ""
    head = "| stream | ensemble | " + " | ".join(names) + " |\n"
    head += "| --- | ---: | " + " | ".join("---:" for _ in names) + " |\n"
    lines = []
    for stream, r in results.items():
        d = r.get("driftline")
        if not d or "error" in d:
            continue
        cells = [f"{d['members'][n]:.4f}" if n in d["members"] else "-" for n in names]
        lines.append(f"| {stream} | {d['accuracy']:.4f} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def para(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False)


def section(results: dict[str, dict[str, Any]], baselines: list[str], command: str,
            cached: bool) -> str:
    streams_list = "\n".join(
        f"- **{name}**: {streams.STREAMS[name].description}"
        + (f"; {r['events']:,} events" if streams.STREAMS[name].real else "")
        + (
            f"; drifts at {', '.join(f'{p:,}' for p in streams.STREAMS[name].drifts(r['events']))}"
            if streams.STREAMS[name].drifts(r["events"])
            else ""
        )
        + "."
        for name, r in results.items()
    )
    source = (
        "from benchmarks/.cache/baselines.json where cached: measured by an earlier run on the "
        "same rows" if cached else "measured in that run"
    )
    intro = para(
        f"""Written by `{command}`; every figure below comes from that run (the River baselines'
        {source}). Python {platform.python_version()},
        River {river.__version__}, {platform.machine()}; events/s depend on the machine and its
        load. The streams (benchmarks/streams.py) are seeded (seed {streams.SEED}): the
        accuracies repeat exactly."""
    )
    how = para(
        """**driftline** is run only through its command line: the rows are written to a CSV
        file (target column `y`, booleans `true`/`false`, strings as they are) and `driftline
        evaluate --csv FILE --target y` runs on it with the built-in default configuration; its
        accuracy is the ensemble's (the served prediction), **best member** the member with the
        highest accuracy, its events/s `events / (seconds - read_seconds)` of its report: the
        learning on rows in memory, as the baselines are measured (the CSV file's reading and
        parsing, `read_seconds`, is left out; its share is printed with each run).
        The **River baselines** run test-then-train on the same rows in memory: every event is
        predicted, scored and learnt (a prediction of None, before anything is learnt, is not
        scored, as in River's `progressive_val_score` and in driftline). LR is
        `StandardScaler | LogisticRegression` (`OneVsRestClassifier` for more than two classes;
        STAGGER's strings one-hot encoded), HT `HoeffdingTreeClassifier()`, HAT
        `HoeffdingAdaptiveTreeClassifier(seed=1)`, ARF `ARFClassifier(n_models=10, seed=1)`,
        LevBag `LeveragingBaggingClassifier(HoeffdingTreeClassifier(), n_models=5, seed=1)`.
        **best baseline** includes no-change; **default - best** is the driftline accuracy minus the
        best baseline's."""
    )
    members = members_table(results)
    return f"""{BEGIN}
## Drift suite: driftline against River's baselines

{intro}

{how}

{streams_list}

### Accuracy

{accuracy_table(results, baselines, "default")}
### Events per second

{speed_table(results, baselines, "default")}
### Every driftline member

{members}{END}"""


def write_doc(text: str) -> None:
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(new, encoding="utf-8")


def names(text: str, known: list[str], what: str, parser: argparse.ArgumentParser) -> list[str]:
    if text.strip().lower() == "none":
        return []
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        parser.error(f"--{what}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", metavar="FILE", help="driftline TOML config (default: none)")
    parser.add_argument("--streams", metavar="A,B", default=",".join(streams.STREAMS),
                        help=f"streams to run (default: all: {','.join(streams.STREAMS)})")
    parser.add_argument("--events", type=int, metavar="N",
                        help=f"events per stream (default: {streams.EVENTS:,} synthetic, the real "
                        "ones whole; a real one is cut at N)")
    parser.add_argument("--baselines", metavar="A,B", default=",".join(BASELINES),
                        help=f"River baselines, or 'none' (default: {','.join(BASELINES)})")
    parser.add_argument("--no-cache", action="store_true",
                        help="measure the baselines again (and update the cache)")
    parser.add_argument("--no-driftline", action="store_true", help="only the baselines")
    parser.add_argument("--csv-dir", metavar="DIR",
                        help="write the streams' CSV files here and keep them (default: a temp "
                        "folder, removed)")
    parser.add_argument("--write", action="store_true",
                        help="replace the drift-suite section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    chosen = names(args.streams, list(streams.STREAMS), "streams", parser)
    baselines = names(args.baselines, list(BASELINES), "baselines", parser)
    if args.write and (args.config or args.events or args.no_driftline
                       or chosen != list(streams.STREAMS) or baselines != list(BASELINES)):
        parser.error("--write documents the whole suite, every baseline, the default config")
    if args.config and not Path(args.config).is_file():
        parser.error(f"--config: no such file: {args.config}")
    config = str(Path(args.config).resolve()) if args.config else None
    command = shlex.join(["python", "benchmarks/drift.py", *argv])

    cache = load_cache()
    any_cached = False
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        folder = Path(args.csv_dir) if args.csv_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            stream = streams.STREAMS[name]
            rows = streams.load(name, args.events)
            csv = streams.write_csv(rows, folder / f"{name}.csv")
            key = (f"{name}/{len(rows)}/{streams.SEED}/{digest(csv)}/river-{river.__version__}"
                   f"/{CACHE_VERSION}")
            r: dict[str, Any] = {"events": len(rows), "baselines": {}}
            results[name] = r
            if not args.no_driftline:
                r["driftline"] = d = run_driftline(csv, config)
                if "error" in d:
                    print(f"{name}: driftline: {d['error']}", file=sys.stderr, flush=True)
                else:
                    print(f"{name}: driftline {d['accuracy']:.4f} (best member {d['best']} "
                          f"{d['members'][d['best']]:.4f}) {d['events_per_second']:,.0f}/s "
                          f"(CSV reading {d['read_seconds']:.2f} s of {d['seconds']:.2f} s)",
                          flush=True)
            for b in baselines:
                hit = None if args.no_cache else cache.get(key, {}).get(b)
                if hit is not None:
                    any_cached = True
                    r["baselines"][b] = hit
                    print(f"{name}: {b} {hit['accuracy']:.4f} (cached)", flush=True)
                    continue
                res = run_baseline(BASELINES[b][1](stream), rows)
                r["baselines"][b] = res
                cache.setdefault(key, {})[b] = res
                save_cache(cache)
                print(f"{name}: {b} {res['accuracy']:.4f} {res['events_per_second']:,.0f}/s",
                      flush=True)

    label = "config" if config else "default"
    print()
    print(f"Command: {command}")
    print()
    print(accuracy_table(results, baselines, label))
    print(speed_table(results, baselines, label))
    print(members_table(results))
    if args.write:
        write_doc(section(results, baselines, command, any_cached))
        print(f"written: {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
