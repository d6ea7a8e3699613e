"""Hostile input soak: Elec2 events with 5% hostile messages of 30 kinds, through the real broker.

`driftline serve` (a child process, as in production) consumes one topic holding the Elec2 events
(looped) and, at random positions (a fixed seed), hostile messages: a 600 kB feature name, a first
event labelled "pwn", a feature whose type changes, 1e308, ten events of 20,000 features, thousands
of distinct labels, events that fill the state with feature names, not JSON, not UTF-8, NaN,
messages just under and over max_message_bytes, deep nesting, and more (`KINDS`).

Each kind is classified by the contract (docs/validation.md): rejected with a reason, or accepted
(a label of another type is a new class, a feature that changes type is fine, duplicate keys take
the last value...). Accepted ones are good events. Two kinds depend on the state (new classes
and new feature names are accepted until `[learning] max_classes` / `max_feature_names` is
reached, then rejected): their expected fate is worked out here, in stream order.

Checked and printed, for each configuration (the default one, then one logistic regression):

- readiness: `/readyz` polled every second from start to end; the number of non-200 answers;
- exactly once: `driftline_samples_learned` (the ensemble's; no member more) and
  `driftline_events_total{outcome}` equal the counts of good labelled / unlabelled / rejected
  messages; with one logistic regression, its prequential accuracy equals River's
  `progressive_val_score` over the good labelled events alone, to 1e-9;
- dead letters: the dead-letter topic is read back; per reason, the count equals what was sent,
  and each dead letter's source offset is a rejected message of that reason;
- memory: the service's RSS, sampled every second, stays under 2x its value after 10,000 events.

    python benchmarks/hostile.py [--events 100000] [--bootstrap HOST:PORT] [--only default|single]

`--max-classes` (default 20) is written into both configurations as `[learning] max_classes`:
with the default (1000), once a hostile producer has created 1,000 classes every event costs
~100x more (every one-vs-rest member predicts 1,000 binary models; measured: 29 ms instead of
0.26 ms per event with the default models), and 100,000 events would take hours.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ONE_MODEL, a_broker, free_port
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from consumers.kafka_io import KafkaSink, create_topic
from driftline.config import LearningSettings
from driftline.datasets import bundled

MAX_MESSAGE_BYTES = 1_000_000  # [validation] max_message_bytes, the default
MAX_FEATURE_NAMES = LearningSettings().max_feature_names  # [learning] max_feature_names
ELEC = [(x, y) for x, y in bundled("elec")]
ACCEPTED = "accepted"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Message:
    value: bytes
    kind: str
    reason: str | None = None  # expected dead-letter reason; None: accepted (a good event)
    x: dict[str, Any] | None = None  # for accepted ones: the event as the contract reads it
    y: Any = None


@dataclass
class Kind:
    name: str
    make: Callable[[random.Random, int], Message]
    count: int  # how many of this kind
    reason: str | None = None  # the expected reason; None: accepted, or decided by the state
    stateful: bool = False  # accepted until a bound of the state is reached


def elec_x(rng: random.Random) -> tuple[dict[str, Any], int]:
    x, y = ELEC[rng.randrange(len(ELEC))]
    return dict(x), y


def rejected(reason: str, value: bytes | Callable[[random.Random, int], bytes]) -> Callable:
    def make(rng: random.Random, i: int) -> Message:
        return Message(value(rng, i) if callable(value) else value, "", reason)
    return make


def accepted(build: Callable[[random.Random, int], tuple[dict[str, Any], Any]],
             raw: Callable[[dict[str, Any], Any], bytes] | None = None) -> Callable:
    def make(rng: random.Random, i: int) -> Message:
        x, y = build(rng, i)
        value = raw(x, y) if raw else dumps({"x": x, "y": y} if y is not None else {"x": x})
        return Message(value, "", None, x, y)
    return make


def padded(size: int) -> Callable[[random.Random, int], Message]:
    """A valid labelled event, padded with JSON whitespace to exactly `size` bytes."""
    def make(rng: random.Random, i: int) -> Message:
        x, y = elec_x(rng)
        body = dumps({"x": x, "y": y})
        value = body[:-1] + b" " * (size - len(body)) + b"}"
        assert len(value) == size
        if size > MAX_MESSAGE_BYTES:
            return Message(value, "", "too_large")
        return Message(value, "", None, x, y)
    return make


def with_flip(rng: random.Random, i: int) -> tuple[dict[str, Any], Any]:
    x, y = elec_x(rng)
    x["flip"] = 1.5 + i if i % 2 == 0 else f"s{i % 7}"  # a number, then a string, ...
    return x, y


def with_names(rng: random.Random, i: int) -> tuple[dict[str, Any], Any]:
    x, y = elec_x(rng)  # up to 1,000 features: 994 new names
    x.update({f"n{i}_{j}": 0.5 for j in range(1000 - len(x))})
    return x, y


def duplicate_keys(rng: random.Random, i: int) -> Message:
    x, y = elec_x(rng)
    inner = ",".join(f'"{k}":{json.dumps(v)}' for k, v in x.items())
    value = f'{{"x":{{"period":"first",{inner}}},"y":"ignored","y":{y}}}'.encode()
    return Message(value, "", None, x, y)  # the last value of a key wins


def null_feature(rng: random.Random, i: int) -> tuple[dict[str, Any], Any]:
    x, y = elec_x(rng)
    return x, y


KINDS: list[Kind] = [
    Kind("huge_600kB_feature_name", rejected(
        "too_long", b'{"x": {"' + b"n" * 600_000 + b'": null}}'), 5, "too_long"),
    Kind("first_label_pwn", accepted(lambda r, i: (elec_x(r)[0], "pwn")), 1,  # at offset 0
         stateful=True),
    Kind("feature_changes_type", accepted(with_flip), 200),
    Kind("finite_extreme_1e308", rejected(
        "out_of_range", lambda r, i: dumps({"x": {**elec_x(r)[0], "vicprice": 1e308},
                                            "y": 1})), 200, "out_of_range"),
    Kind("20000_new_feature_names", rejected(
        "too_many_features", lambda r, i: dumps({"x": {f"w{i}_{j}": 1.0 for j in range(20_000)},
                                                 "y": 0})), 10, "too_many_features"),
    Kind("distinct_labels", accepted(lambda r, i: (elec_x(r)[0], f"class-{i}")), 2000,
         stateful=True),
    Kind("1000_features_new_names", accepted(with_names), 15, stateful=True),
    Kind("not_json", rejected("not_json", b'{"x": {"period": 0.5,'), 150, "not_json"),
    Kind("not_utf8", rejected("not_utf8", b'{"x": {"period": "\xff\xfe"}, "y": 1}'), 150,
         "not_utf8"),
    Kind("nan", rejected("not_finite", b'{"x": {"period": NaN}, "y": 1}'), 100, "not_finite"),
    Kind("infinity", rejected("not_finite", b'{"x": {"period": -Infinity}, "y": 0}'), 100,
         "not_finite"),
    Kind("overflow_1e999", rejected("not_finite", b'{"x": {"period": 1e999}, "y": 0}'), 100,
         "not_finite"),
    Kind("nested_x", rejected("bad_feature", b'{"x": {"period": {"a": {"b": 1}}}, "y": 1}'),
         150, "bad_feature"),
    Kind("list_label", rejected("bad_label", b'{"x": {"period": 0.5}, "y": [1, 0]}'), 150,
         "bad_label"),
    Kind("non_whole_float_label", rejected("not_a_class", b'{"x": {"period": 0.5}, "y": 0.5}'),
         150, "not_a_class"),
    Kind("huge_integer_feature", rejected(
        "out_of_range", b'{"x": {"period": ' + b"9" * 400 + b'}, "y": 1}'), 100, "out_of_range"),
    Kind("huge_integer_label", rejected(
        "out_of_range", b'{"x": {"period": 0.5}, "y": ' + b"9" * 30 + b"}"), 100,
        "out_of_range"),
    Kind("empty", rejected("empty", b""), 150, "empty"),
    Kind("json_array", rejected("not_object", b"[1, 2, 3]"), 150, "not_object"),
    Kind("json_string", rejected("not_object", b'"hello"'), 50, "not_object"),
    Kind("string_x", rejected("x_not_mapping", b'{"x": "period=0.5", "y": 1}'), 150,
         "x_not_mapping"),
    Kind("missing_x", rejected("missing_x", b'{"y": 1}'), 100, "missing_x"),
    Kind("overlong_string_value", rejected(
        "too_long", b'{"x": {"city": "' + b"s" * 5000 + b'"}, "y": 1}'), 100, "too_long"),
    Kind("overlong_feature_name", rejected(
        "too_long", b'{"x": {"' + b"n" * 300 + b'": 1}, "y": 1}'), 100, "too_long"),
    Kind("overlong_label", rejected(
        "too_long", b'{"x": {"period": 0.5}, "y": "' + b"L" * 300 + b'"}'), 100, "too_long"),
    Kind("id_is_a_number", rejected("bad_id", b'{"id": 7, "x": {"period": 0.5}, "y": 1}'), 150,
         "bad_id"),
    Kind("just_under_max_message_bytes", padded(MAX_MESSAGE_BYTES), 4),
    Kind("just_over_max_message_bytes", padded(MAX_MESSAGE_BYTES + 1), 4, "too_large"),
    Kind("duplicate_keys", duplicate_keys, 150),
    Kind("deep_nesting", rejected("not_json", b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
         10, "not_json"),
    Kind("boolean_label", accepted(lambda r, i: (elec_x(r)[0], True)), 150),
    Kind("string_label_of_a_number", accepted(lambda r, i: (elec_x(r)[0], "1")), 150,
         stateful=True),
    Kind("unlabelled", accepted(lambda r, i: (elec_x(r)[0], None)), 150),
    Kind("null_feature", accepted(
        null_feature,
        raw=lambda x, y: dumps({"x": {**x, "absent": None}, "y": y})), 150),
    Kind("utf8_bom", rejected("not_json", b'\xef\xbb\xbf{"x": {"period": 0.5}, "y": 1}'), 100,
         "not_json"),
]


@dataclass
class Stream:
    messages: list[Message]
    good_labelled: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    unlabelled: int = 0
    expected_reasons: Counter = field(default_factory=Counter)
    by_kind: dict[str, Counter] = field(default_factory=dict)


def build_stream(events: int, share: float, seed: int, max_classes: int) -> Stream:
    """`events` Elec2 events (looped) and hostile messages making `share` of all, at random
    positions; the first message is the "pwn" one. Expected fates worked out in order."""
    rng = random.Random(seed)
    hostile: list[Message] = []
    for kind in KINDS:
        for i in range(kind.count):
            m = kind.make(rng, i)
            m.kind = kind.name
            hostile.append(m)
    pad = round(events * share / (1 - share)) - len(hostile)
    filler = [k for k in KINDS if not k.stateful and k.count >= 100]
    for i in range(max(0, pad)):  # more of the common kinds, up to the share
        kind = filler[i % len(filler)]
        m = kind.make(rng, 10_000 + i)
        m.kind = kind.name
        hostile.append(m)
    first = next(m for m in hostile if m.kind == "first_label_pwn")
    hostile.remove(first)
    rng.shuffle(hostile)
    total = events + len(hostile) + 1
    slots = set(rng.sample(range(1, total), len(hostile)))
    good = itertools.cycle(ELEC)
    messages: list[Message] = [first]
    queue = iter(hostile)
    for position in range(1, total):
        if position in slots:
            messages.append(next(queue))
        else:
            x, y = next(good)
            messages.append(Message(dumps({"x": x, "y": y}), "elec", None, dict(x), y))
    stream = Stream(messages)
    classes: set[Any] = set()
    names: set[str] = set()
    for m in messages:
        if m.reason is None:  # as the pipeline's bounds judge it (pipeline/ensemble.py)
            new = m.x.keys() - names  # type: ignore[union-attr]
            if len(names) + len(new) > MAX_FEATURE_NAMES:
                m.reason = "too_many_feature_names"
            else:
                names |= new
                if m.y is not None and m.y not in classes:
                    if len(classes) >= max_classes:
                        m.reason = "too_many_classes"
                    else:
                        classes.add(m.y)
        if m.reason is not None:
            stream.expected_reasons[m.reason] += 1
        elif m.y is None:
            stream.unlabelled += 1
        else:
            stream.good_labelled.append((m.x, m.y))  # type: ignore[arg-type]
        if m.kind != "elec":
            stream.by_kind.setdefault(m.kind, Counter())[m.reason or ACCEPTED] += 1
    return stream


def publish(bootstrap: str, topic: str, stream: Stream) -> None:
    create_topic(bootstrap, topic, 1)
    sink = KafkaSink(bootstrap, linger_ms=20, batch_size=512 * 1024, max_request_size=2**21)
    for m in stream.messages:
        sink.send(topic, m.value)
    sink.flush()
    sink.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


CONFIGS = {
    "default": "",
    "single": ONE_MODEL,
}


def soak(bootstrap: str, topic: str, stream: Stream, name: str, max_classes: int,
         workdir: Path) -> dict[str, Any]:
    port = free_port()
    config = workdir / f"{name}.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic = "{topic}"\n'
        f'group_id = "{topic}-{name}"\ndead_letter_topic = "{topic}.{name}.dlq"\n\n'
        f'[metrics]\nport = {port}\n\n[checkpoint]\ndir = "{workdir / name}"\n\n'
        f"[learning]\nmax_classes = {max_classes}\n" + CONFIGS[name]
    )
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "driftline", "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    total = len(stream.messages)
    ready_answers: Counter = Counter()
    rss: list[tuple[float, int]] = []  # (events consumed, KiB)
    baseline = None
    consumed = 0.0
    started = time.monotonic()
    done = threading.Event()

    def poll_ready() -> None:  # every second, from the start to the end
        became_ready = False
        while not done.is_set():
            t = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    code: int | str = r.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except OSError:
                code = "no answer"
            became_ready = became_ready or code == 200
            # Before its first 200 the service is starting (the group join): counted apart.
            ready_answers[code if became_ready else f"starting: {code}"] += 1
            done.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    # Readiness is polled from the first answer of the metrics port on.
    while time.monotonic() - started < 60:
        try:
            scrape(port)
            break
        except OSError:
            time.sleep(0.2)
    poller = threading.Thread(target=poll_ready, daemon=True)
    poller.start()
    try:
        while consumed < total:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}")
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            consumed = sum(metric(samples, "driftline_events_total", outcome=o) or 0
                           for o in ("learned", "unlabelled", "dead_lettered"))
            kib = rss_kib(proc.pid)
            rss.append((consumed, kib))
            if baseline is None and consumed >= 10_000:
                baseline = kib
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        time.sleep(2.0)  # anything learned twice would show up now
        samples = scrape(port)
    finally:
        done.set()
        poller.join()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        log.close()
    expected = sum(stream.expected_reasons.values())
    dead = read_dead_letters(bootstrap, f"{topic}.{name}.dlq", expected)
    after = [k for c, k in rss if c >= 10_000]
    return {
        "samples": samples, "elapsed": elapsed, "ready": ready_answers, "dead": dead,
        "rss_baseline": baseline, "rss_max": max(after) if after else None,
        "exit": proc.returncode,
    }



def read_dead_letters(bootstrap: str, topic: str, expected: int) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None,
                             fetch_max_bytes=8 * 2**20, max_partition_fetch_bytes=4 * 2**20)
    records: list[Any] = []
    deadline = time.monotonic() + 120
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        quiet = time.monotonic() + 2.0
        while time.monotonic() < quiet:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def river_accuracy(events: list[tuple[dict[str, Any], Any]]) -> float:
    """River's progressive_val_score of `TypedScaler() | OneVsRest(LogisticRegression())`
    (River's pipeline and River's binary model on a binary stream, its `OneVsRestClassifier`
    from the third class on) over `events`. `TypedScaler` is River's `StandardScaler` (with its
    `OneHotEncoder(drop_zeros=True)` for strings) to the last bit, except that it takes a value
    more than ten deviations out as ten deviations, which looped Elec2 has from about its
    17,400th event (docs/drift.md, "How the members read features")."""
    from river import evaluate, linear_model, metrics

    from pipeline.onevsrest import OneVsRest
    from pipeline.preprocessing import TypedScaler

    model = TypedScaler() | OneVsRest(linear_model.LogisticRegression())
    return float(evaluate.progressive_val_score(events, model, metrics.Accuracy()).get())


def report(name: str, stream: Stream, result: dict[str, Any]) -> bool:
    s = result["samples"]
    ok = True

    def check(label: str, good: bool, detail: str) -> None:
        nonlocal ok
        ok &= good
        print(f"  [{'ok' if good else 'FAIL'}] {label}: {detail}")

    n_good = len(stream.good_labelled)
    n_dead = sum(stream.expected_reasons.values())
    print(f"\n{name}: {len(stream.messages):,} messages consumed in {result['elapsed']:.0f} s "
          f"({len(stream.messages) / result['elapsed']:,.0f} messages/s); exit status "
          f"{result['exit']}")
    ready = result["ready"]
    bad = sum(n for code, n in ready.items() if code != 200 and not str(code).startswith("st"))
    check("ready throughout", bad == 0,
          f"{sum(ready.values())} polls of /readyz once per second, {bad} not 200 after the "
          f"first 200 ({dict(ready)})")
    learned = {dict(k[1]).get("model"): v for k, v in s.items()
               if k[0] == "driftline_samples_learned"}
    # Members far behind the leader sleep (they stop learning, by design): the ensemble's count is
    # the one that says whether every good event was learned once; no member learns more.
    check("every good labelled event learned once (ensemble; no member more)",
          learned.get("ensemble") == n_good and all(v <= n_good for v in learned.values()),
          f"{n_good:,} good labelled events; driftline_samples_learned {learned}")
    outcomes = {o: metric(s, "driftline_events_total", outcome=o)
                for o in ("learned", "unlabelled", "dead_lettered")}
    check("events_total by outcome",
          outcomes == {"learned": n_good, "unlabelled": stream.unlabelled,
                       "dead_lettered": n_dead},
          f"{outcomes} (expected learned {n_good:,}, unlabelled {stream.unlabelled}, "
          f"dead_lettered {n_dead:,})")
    reasons = {reason: int(v) for (n, labels), v in s.items()
               if n == "driftline_dead_letters_total" and v
               for reason in [dict(labels)["reason"]]}
    check("driftline_dead_letters_total by reason", reasons == dict(stream.expected_reasons),
          f"{dict(sorted(reasons.items()))}")
    dead = result["dead"]
    topic_reasons: Counter = Counter()
    mismatched = 0
    offsets = Counter()
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        offset = int(headers["driftline.source.offset"])
        offsets[offset] += 1
        topic_reasons[headers["driftline.reason"]] += 1
        if stream.messages[offset].reason != headers["driftline.reason"]:
            mismatched += 1
    twice = sum(1 for n in offsets.values() if n > 1)
    check("dead-letter topic: count per reason as sent",
          topic_reasons == stream.expected_reasons and mismatched == 0,
          f"{len(dead):,} dead letters (expected {n_dead:,}), {mismatched} with another "
          f"reason than expected, {twice} source offsets twice")
    if name == "single":
        live = metric(s, "driftline_prequential_accuracy", model="lr")
        reference = river_accuracy(stream.good_labelled)
        check("accuracy equals River's model's over the good events",
              live is not None and abs(live - reference) <= 1e-9,
              f"driftline {live!r}, River {reference!r}")
    base, peak = result["rss_baseline"], result["rss_max"]
    check("RSS under 2x its value after 10,000 events",
          base is not None and peak is not None and peak < 2 * base,
          f"{(base or 0) / 1024:.0f} MiB after 10,000 events, at most {(peak or 0) / 1024:.0f} "
          f"MiB after ({(peak or 0) / max(base or 1, 1):.2f}x)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="Elec2 events (looped)")
    parser.add_argument("--share", type=float, default=0.05, help="hostile share of messages")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--max-classes", type=int, default=20)
    parser.add_argument("--only", choices=sorted(CONFIGS))
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()

    bootstrap = a_broker(args.bootstrap)
    stream = build_stream(args.events, args.share, args.seed, args.max_classes)
    hostile = sum(1 for m in stream.messages if m.kind != "elec")
    print(f"{len(stream.messages):,} messages: {args.events:,} Elec2 events and {hostile:,} "
          f"hostile messages ({hostile / len(stream.messages):.1%}) of {len(stream.by_kind)} "
          f"kinds, seed {args.seed}, [learning] max_classes = {args.max_classes}")
    print(f"{'kind':32} {'sent':>6}  fate")
    for kind in (k.name for k in KINDS):
        fates = stream.by_kind[kind]
        fate = ", ".join(f"{n} {r}" for r, n in fates.most_common())
        print(f"{kind:32} {sum(fates.values()):>6}  {fate}")
    print(f"good labelled events {len(stream.good_labelled):,}, unlabelled {stream.unlabelled}, "
          f"rejected {sum(stream.expected_reasons.values()):,}")
    topic = f"bench-hostile-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    publish(bootstrap, topic, stream)
    print(f"topic {topic} filled in {time.perf_counter() - t:.0f} s")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in [args.only] if args.only else list(CONFIGS):
            result = soak(bootstrap, topic, stream, name, args.max_classes, Path(tmp))
            ok &= report(name, stream, result)
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
