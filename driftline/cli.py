"""The `driftline` command: serve, publish, evaluate, kafka up/down.

Configuration and input errors exit with status 2 and one line naming the key, argument or file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from consumers.errors import StreamError
from driftline import __version__
from driftline.config import Settings, load_settings
from driftline.errors import BrokerError, ConfigError, DataError

log = logging.getLogger("driftline")

Row = tuple[dict[str, Any], Any]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65534:  # the controller listens on port + 1
        raise argparse.ArgumentTypeError(f"must be below 65535, got {value}")
    return value


def _sasl_user(text: str) -> tuple[str, str]:
    name, colon, password = text.partition(":")
    if not colon or not name or not password:  # the text is not echoed: it holds a password
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD, both non-empty")
    return name, password


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline", description="Continual learning on Kafka event streams."
    )
    parser.add_argument("--version", action="version", version=f"driftline {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the service")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: built-in)")

    p = sub.add_parser("publish", help="publish a CSV file or a synthetic stream as events")
    p.add_argument("--config", metavar="FILE", help="take bootstrap servers and topic from it")
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="default: from the config")
    p.add_argument("--topic", help="default: from the config ('events')")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="a CSV file (plain or .gz) with a header row")
    src.add_argument("--dataset", choices=["elec"], help="a data set shipped with driftline")
    src.add_argument(
        "--synthetic", choices=["sea", "agrawal", "hyperplane", "stationary"],
        help="a River stream with known drifts",
    )
    p.add_argument("--target", metavar="COLUMN", help="the label column of --csv")
    p.add_argument("--rate", type=_positive_float, metavar="N", help="events per second")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="publish at most N events")
    p.add_argument("--loop", action="store_true", help="start over at the end, forever")
    p.add_argument("--partitions", type=_positive_int, default=1,
                   help="partitions if the topic is created (default 1)")
    p.add_argument("--seed", type=int, default=42, help="seed of --synthetic (default 42)")
    p.add_argument("--label-delay", type=_natural, default=0, metavar="N",
                   help="send each event without its label (with an id) and the label N "
                        "events later, on the labels topic (default 0: labels inline)")
    p.add_argument("--labels-on-events-topic", action="store_true",
                   help="with --label-delay: send the labels on the events topic instead")

    p = sub.add_parser("evaluate", help="run the learning core over a CSV file, no Kafka")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="a CSV file (plain or .gz) with a header row")
    src.add_argument("--dataset", choices=["elec"], help="a data set shipped with driftline")
    p.add_argument("--target", metavar="COLUMN", help="the label column of --csv")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: built-in)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N rows")
    p.add_argument("--delay", type=_natural, default=0, metavar="N",
                   help="hold each row's label back N rows (delayed labels; default 0)")

    p = sub.add_parser("kafka", help="a local Apache Kafka broker (needs Java 17 and Maven)")
    ksub = p.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    k = ksub.add_parser("up", help="start it (idempotent); returns once it accepts connections")
    k.add_argument("--port", type=_port, default=9092, help="client port (default 9092)")
    # To try driftline against a secured cluster locally; PLAINTEXT stays on --port.
    k.add_argument("--sasl-port", type=_port, metavar="PORT",
                   help="also open a SASL_PLAINTEXT listener (mechanism PLAIN) on this port")
    k.add_argument("--sasl-user", type=_sasl_user, action="append", metavar="NAME:PASSWORD",
                   help="a user of the SASL listener (repeatable)")
    k = ksub.add_parser("down", help="stop it; its data is kept")
    k.add_argument("--port", type=_port, default=9092, help="client port (default 9092)")
    k.add_argument("--delete-data", action="store_true", help="also delete its topics")
    return parser


def _rows(args: argparse.Namespace, limit: int | None = None) -> Iterator[Row]:
    """The rows the arguments name; a missing file or column fails here, before any work."""
    from driftline import datasets

    rows: Iterator[Row]
    if args.csv:
        if not args.target:
            raise DataError("--target: required with --csv (the label column)")
        rows = datasets.read_csv(args.csv, args.target, limit)
    elif args.dataset:
        rows = datasets.bundled(args.dataset, limit)
    else:
        rows = datasets.synthetic(args.synthetic, limit or 100_000, seed=args.seed)
    first = next(rows, None)  # reading the header and first row surfaces their errors now
    return rows if first is None else itertools.chain([first], rows)


def _serve(args: argparse.Namespace) -> int:
    from driftline.app import serve

    return serve(load_settings(args.config))


def _evaluate(args: argparse.Namespace) -> int:
    from driftline.learning import build_learner
    from pipeline.evaluate import evaluate

    settings = load_settings(args.config)
    learner = build_learner(settings)
    rows = _rows(args, args.limit)
    report = evaluate(learner, rows, delay=args.delay,
                      max_abs_value=settings.validation.max_abs_value)
    print(json.dumps(report))
    if report["rejected"]:
        print(f"driftline: warning: {report['rejected']} rows not learned: "
              f"{report['rejections']} (out_of_range: a number beyond [validation] "
              "max_abs_value; too_many_*: past a [learning] bound)", file=sys.stderr)
    failing = {name: m["failed"] for name, m in report["models"].items() if m["failed"]}
    if failing:
        print(f"driftline: warning: models raised on some events: {failing} "
              "(see 'failed' and 'resets' in the report)", file=sys.stderr)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from consumers.kafka_io import KafkaSink, broker_problem, create_topic
    from driftline.cluster import cluster
    from driftline.config import settings_from_dict
    from driftline.publish import Progress, publish

    settings = load_settings(args.config) if args.config else Settings()
    overrides = {}
    if args.bootstrap_servers:
        overrides["bootstrap_servers"] = args.bootstrap_servers
    if args.topic:
        overrides["topic"] = args.topic
    if overrides:  # validated like the file's keys
        kafka = {**settings.kafka.__dict__, **overrides}
        settings = settings_from_dict({"kafka": kafka})
    bootstrap, topic = cluster(settings.kafka), settings.kafka.topic
    if args.loop and args.synthetic:
        raise DataError("--loop: only with --csv or --dataset")
    rows = _rows(args, None if args.loop else args.limit)
    problem = broker_problem(bootstrap)
    if problem is not None:
        hint = " (try: driftline kafka up)" if problem.startswith("nothing listens") else ""
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {problem}{hint}")
    if create_topic(bootstrap, topic, args.partitions):
        log.info("created topic %s with %d partition(s)", topic, args.partitions)
    labels = topic
    if args.label_delay and not args.labels_on_events_topic:
        labels = settings.labels_topic
        if not labels:
            raise ConfigError("labels.topic: turned off; use --labels-on-events-topic")
        # Co-partitioned with the events (the service checks it): as many partitions.
        if create_topic(bootstrap, labels, args.partitions):
            log.info("created topic %s with %d partition(s)", labels, args.partitions)
    sink = KafkaSink(bootstrap)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        n = publish(
            lambda value, key: sink.send(topic, value, key),
            rows,
            rate=args.rate,
            limit=args.limit,
            loop=args.loop,
            progress=Progress(args.limit),
            should_stop=lambda: bool(stopping),
            label_delay=args.label_delay,
            send_label=lambda value, key: sink.send(labels, value, key),
        )
    except KeyboardInterrupt:
        n = -1
    finally:
        sink.flush()
        sink.close()
    if n >= 0:
        log.info("published %d events to %s at %s", n, topic, bootstrap)
    return 0


def _kafka(args: argparse.Namespace) -> int:
    from driftline import broker

    if args.kafka_command == "up":
        users = dict(args.sasl_user) if args.sasl_user else None
        bootstrap = broker.up(args.port, sasl_port=args.sasl_port, sasl_users=users)
        print(bootstrap)
    else:
        broker.down(args.port, delete_data=args.delete_data)
    return 0


def _factory_syntax_error(args: argparse.Namespace, exc: SyntaxError) -> str:
    """One line naming the `[[models]]` entry whose factory module does not compile."""
    where = f"{exc.filename}, line {exc.lineno}: {exc.msg}"
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError:
        settings = Settings()
    if exc.filename:
        path = Path(exc.filename).with_suffix("")
        parts = path.parts[:-1] if path.name == "__init__" else path.parts
        # the factory's module itself, else a package it lives in
        for whole in (True, False):
            for i, spec in enumerate(settings.models):
                module, sep, _ = spec.model.partition(":")
                names = tuple(module.split("."))
                ks = [len(names)] if whole else range(len(names) - 1, 0, -1)
                if sep and any(parts[-k:] == names[:k] for k in ks):
                    return (f"models[{i}].model: cannot load factory {spec.model!r}: "
                            f"SyntaxError in {where}")
    return f"[[models]]: a model factory module does not compile: SyntaxError in {where}"


COMMANDS = {"serve": _serve, "publish": _publish, "evaluate": _evaluate, "kafka": _kafka}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the client logs every reconnect
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError) as exc:
        print(f"driftline: error: {exc}", file=sys.stderr)
        return 2
    except SyntaxError as exc:  # only user code is imported at run time: a model factory
        print(f"driftline: error: {_factory_syntax_error(args, exc)}", file=sys.stderr)
        return 2
    except (BrokerError, StreamError) as exc:
        print(f"driftline: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
