"""Typed, frozen settings read from a TOML file and validated before anything is consumed.

Every key has a default, so `Settings()` (no file) is the built-in configuration. A wrong key or
value raises `ConfigError` with a message that names it; the CLI turns that into exit status 2.
Checks that need River (presets, factories, detector parameters) are done by
`driftline.learning.build_learner`, also before anything is consumed.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from consumers import wire
from consumers.wire import FEATURE_KINDS
from driftline.errors import ConfigError
from pipeline.names import DETECTOR_NAMES, ENSEMBLE, RESPONSES

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Where the SASL password is read from when the file does not set `[kafka] sasl_password`.
SASL_PASSWORD_ENV = "DRIFTLINE_KAFKA_SASL_PASSWORD"

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "events"
    group_id: str = "driftline"
    auto_offset_reset: str = "earliest"
    dead_letter_topic: str = ""  # "" means "<topic>.dlq", resolved in `Settings`
    max_poll_records: int = 10_000  # a cap: each poll takes about half a second of work
    # Static group membership: a restarted instance takes its partitions back at once instead
    # of waiting for the session to time out. "" derives one from the host and state folder.
    group_instance_id: str = ""
    session_timeout_ms: int = 10_000
    # None means "<topic>.predictions" (resolved in `Settings`); "" turns predictions off
    predictions_topic: str | None = None
    # How to reach the brokers: TLS, SASL, or both (README, "Secured clusters").
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    # "" with SASL: read from the environment (SASL_PASSWORD_ENV) at start-up, so that a
    # secret need not be written into the config file.
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model: str


@dataclass(frozen=True)
class DriftSettings:
    detector: str = "adwin"
    response: str = "reweight"
    params: Mapping[str, Any] = field(default_factory=dict)  # passed to the River detector
    boost: float = 2.0  # sample weight right after a drift (reweight)
    boost_decay: float = 200.0  # events for the boost to fall by a factor e
    fading: float = 0.995  # fading factor of the accuracy that drives ensemble weights
    sharpness: float = 10.0  # how strongly ensemble weights favour the most accurate member


@dataclass(frozen=True)
class ValidationSettings:
    max_message_bytes: int = wire.DEFAULT_MAX_BYTES
    features: Mapping[str, str] = field(default_factory=dict)  # name -> number|string|bool
    allow_extra_features: bool = True
    # Bounds on one event (docs/validation.md); beyond them the event is dead-lettered.
    max_abs_value: float = wire.DEFAULT_MAX_ABS_VALUE  # |feature value| -> out_of_range
    max_features: int = wire.DEFAULT_MAX_FEATURES  # features per event -> too_many_features
    max_label_chars: int = wire.DEFAULT_MAX_LABEL_CHARS  # -> too_long
    max_id_chars: int = wire.DEFAULT_MAX_ID_CHARS  # -> too_long
    max_feature_name_chars: int = wire.DEFAULT_MAX_FEATURE_NAME_CHARS  # -> too_long
    max_string_value_chars: int = wire.DEFAULT_MAX_STRING_VALUE_CHARS  # -> too_long

    def limits(self) -> wire.Limits:
        return wire.Limits(
            max_abs_value=self.max_abs_value,
            max_features=self.max_features,
            max_label_chars=self.max_label_chars,
            max_id_chars=self.max_id_chars,
            max_feature_name_chars=self.max_feature_name_chars,
            max_string_value_chars=self.max_string_value_chars,
        )

    def decoder(self) -> wire.Decoder:
        """The decoder these settings describe (what `driftline serve` should use)."""
        return wire.Decoder(
            self.max_message_bytes,
            dict(self.features) or None,
            self.allow_extra_features,
            limits=self.limits(),
        )


@dataclass(frozen=True)
class LearningSettings:
    """What sizes and bounds the learning state (all of it checkpointed)."""

    rolling_window: int = 1000  # events in the rolling scores
    reset_after_failures: int = 10  # consecutive failures before a member is replaced
    # Bounds on what one producer can make the state hold. One-vs-rest members cost a model per
    # class and trees an observer per leaf, feature and class: past about a hundred classes or
    # a thousand feature names, every later event costs many times more (measured with
    # benchmarks/hostile.py). Raise them for a stream that needs more.
    max_classes: int = 100  # distinct labels the state may hold
    max_feature_names: int = 1000  # distinct feature names the state may hold
    # Members far behind the leader sleep (no cost) until a drift wakes them: how far (a
    # share of accuracy; 0 turns sleeping off), for how many labelled events in a row, and a
    # wake-up of every sleeping member each `wake_every` labelled events.
    sleep_margin: float = 0.05
    sleep_after: int = 2000
    wake_every: int = 20_000


@dataclass(frozen=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    port: int = 9108


@dataclass(frozen=True)
class LabelsSettings:
    """Delayed labels: events with an id and no label wait for it, within these bounds (the
    oldest dropped first, counted in driftline_labels_expired_total)."""

    max_pending: int = 100_000  # events waiting at once
    max_age_seconds: float = 7 * 86_400.0  # a week: labels later than that are unknown_id
    # Where labels may also come from, co-partitioned with kafka.topic; None means
    # "<kafka.topic>.labels", consumed when it exists at start; "" turns it off.
    topic: str | None = None


@dataclass(frozen=True)
class CheckpointSettings:
    dir: str = "state"
    interval_seconds: float = 5.0
    keep: int = 3
    key_file: str = ""  # HMAC key; "" means $DRIFTLINE_CHECKPOINT_KEY or "<dir>/checkpoint.key"
    scope: str = "global"  # or "partition": one learning state per input partition
    store: str = "files"  # or "kafka": states in a compacted topic, written in a transaction
    topic: str = ""  # the Kafka store's topic; "" means "<group_id>.state"


# Chosen with benchmarks/drift.py (docs/benchmarks.md): linear models for linear and
# Elec2-like concepts, a quickly growing tree for rules, k nearest neighbours for local,
# nonlinear concepts; the members that do not pay for themselves on a stream sleep.
DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("passive_aggressive", "passive_aggressive"),
    ModelSpec("logistic_regression", "logistic_regression"),
    ModelSpec("hoeffding_tree", "hoeffding_tree_quick"),
    ModelSpec("knn", "knn"),
)


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    drift: DriftSettings = field(default_factory=DriftSettings)
    learning: LearningSettings = field(default_factory=LearningSettings)
    labels: LabelsSettings = field(default_factory=LabelsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)

    @property
    def dead_letter_topic(self) -> str:
        return self.kafka.dead_letter_topic or f"{self.kafka.topic}.dlq"

    @property
    def predictions_topic(self) -> str:
        """Where predictions go; "" when they are turned off."""
        topic = self.kafka.predictions_topic
        return f"{self.kafka.topic}.predictions" if topic is None else topic

    @property
    def state_topic(self) -> str:
        return self.checkpoint.topic or f"{self.kafka.group_id}.state"

    @property
    def labels_topic(self) -> str:
        """The labels topic's name; "" when it is turned off."""
        topic = self.labels.topic
        return f"{self.kafka.topic}.labels" if topic is None else topic


# --- validation -----------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown key '{key}'{hint}; known keys: {', '.join(known)}")


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _optional_string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _topic(key: str, value: Any) -> str:
    value = _string(key, value)
    if not _TOPIC.match(value) or value in (".", ".."):
        raise ConfigError(f"{key}: {value!r} is not a valid Kafka topic name")
    return value


def _optional_topic(key: str, value: Any) -> str:
    return "" if value == "" else _topic(key, value)


def _derived_topic(key: str, value: Any) -> str | None:
    # None (not writable in TOML) is the default that derives the name from kafka.topic; it
    # comes back when settings are validated again from their own fields.
    return None if value is None else _optional_topic(key, value)


def _bootstrap(key: str, value: Any) -> str:
    value = _string(key, value)
    for server in value.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{key}: {server!r} is not host:port")
    return value


def _optional_file(key: str, value: Any) -> str:
    value = _optional_string(key, value)
    if value and not Path(value).is_file():
        raise ConfigError(f"{key}: no such file: {value}")
    return value


def _choice(options: tuple[str, ...]) -> Check:
    def check(key: str, value: Any) -> str:
        if value not in options:
            close = difflib.get_close_matches(str(value), options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(options)}{hint}")
        return str(value)

    return check


def _int(low: int, high: int | None = None) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"{key}: {value} must be {bounds}")
        return value

    return check


def _float(low: float, high: float | None = None, *, open_low: bool = False) -> Check:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        too_low = value <= low if open_low else value < low
        if too_low or (high is not None and value > high) or not math.isfinite(value):
            bounds = (">" if open_low else ">=") + f" {low}"
            if high is not None:
                bounds += f" and <= {high}"
            raise ConfigError(f"{key}: {value} must be {bounds}")
        return float(value)

    return check


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table, got {value!r}")
    return dict(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _feature_kinds(key: str, value: Any) -> dict[str, str]:
    table = _table(key, value)
    for name, kind in table.items():
        _choice(FEATURE_KINDS)(f"{key}.{name}", kind)
    return table


_SCHEMA: dict[str, tuple[type, dict[str, Check]]] = {
    "kafka": (
        KafkaSettings,
        {
            "bootstrap_servers": _bootstrap,
            "topic": _topic,
            "group_id": _string,
            "auto_offset_reset": _choice(("earliest", "latest")),
            "dead_letter_topic": _optional_topic,
            "predictions_topic": _derived_topic,
            "max_poll_records": _int(1, 100_000),
            "group_instance_id": _optional_string,
            "session_timeout_ms": _int(1000, 3_600_000),
            "security_protocol": _choice(SECURITY_PROTOCOLS),
            "sasl_mechanism": _choice(SASL_MECHANISMS),
            "sasl_username": _optional_string,
            "sasl_password": _optional_string,
            "ssl_cafile": _optional_file,
            "ssl_certfile": _optional_file,
            "ssl_keyfile": _optional_file,
            "ssl_check_hostname": _bool,
        },
    ),
    "drift": (
        DriftSettings,
        {
            "detector": _choice(DETECTOR_NAMES),
            "response": _choice(RESPONSES),
            "params": _table,
            "boost": _float(1.0),
            "boost_decay": _float(0.0, open_low=True),
            "fading": _float(0.0, 1.0, open_low=True),
            "sharpness": _float(0.0),
        },
    ),
    "validation": (
        ValidationSettings,
        {
            "max_message_bytes": _int(16, 100_000_000),
            "features": _feature_kinds,
            "allow_extra_features": _bool,
            "max_abs_value": _float(0.0, 1e300, open_low=True),
            "max_features": _int(1, 1_000_000),
            "max_label_chars": _int(1, 1_000_000),
            "max_id_chars": _int(1, 1_000_000),
            "max_feature_name_chars": _int(1, 1_000_000),
            "max_string_value_chars": _int(1, 100_000_000),
        },
    ),
    "learning": (
        LearningSettings,
        {
            "rolling_window": _int(1, 10_000_000),
            "reset_after_failures": _int(1, 1_000_000),
            "max_classes": _int(2, 1_000_000),
            "max_feature_names": _int(1, 10_000_000),
            "sleep_margin": _float(0.0, 1.0),
            "sleep_after": _int(1, 100_000_000),
            "wake_every": _int(1, 100_000_000),
        },
    ),
    "labels": (
        LabelsSettings,
        {"max_pending": _int(1, 100_000_000), "max_age_seconds": _float(0.0, open_low=True),
         "topic": _derived_topic},
    ),
    "metrics": (MetricsSettings, {"host": _string, "port": _int(0, 65535)}),
    "checkpoint": (
        CheckpointSettings,
        {
            "dir": _string,
            "interval_seconds": _float(0.0, open_low=True),
            "keep": _int(1, 1000),
            "key_file": _optional_string,
            "scope": _choice(("global", "partition")),
            "store": _choice(("files", "kafka")),
            "topic": _optional_topic,
        },
    ),
}
_MODEL_KEYS = {"name": _string, "model": _string}


# Keys that moved: (section, key) -> where they are now.
_MOVED = {("metrics", "rolling_window"): "learning.rolling_window"}


def _section(name: str, raw: Any) -> Any:
    cls, checks = _SCHEMA[name]
    table = _table(f"[{name}]", raw)
    values = {}
    for key, value in table.items():
        if (name, key) in _MOVED:
            raise ConfigError(f"{name}.{key}: moved to {_MOVED[name, key]} (it sizes learning "
                              "state, so it belongs with the learning settings)")
        if key not in checks:
            raise _unknown(key, list(checks), f"[{name}]")
        values[key] = checks[key](f"{name}.{key}", value)
    return cls(**values)


def _models(raw: Any) -> tuple[ModelSpec, ...]:
    # Imported here: pipeline.core imports River, seconds that `publish` and `kafka` need not pay.

    if not isinstance(raw, list) or not raw:
        raise ConfigError("[[models]]: expected one or more [[models]] tables")
    specs: list[ModelSpec] = []
    for i, entry in enumerate(raw):
        where = f"models[{i}]"
        entry = _table(where, entry)
        for key in entry:
            if key not in _MODEL_KEYS:
                raise _unknown(key, list(_MODEL_KEYS), where)
        if "model" not in entry:
            raise ConfigError(f"{where}.model: missing (a preset or 'package.module:factory')")
        model = _string(f"{where}.model", entry["model"])
        module, sep, attr = model.partition(":")
        if sep and not (module and attr):
            raise ConfigError(f"{where}.model: {model!r} is not 'package.module:factory'")
        name = _string(f"{where}.name", entry.get("name", attr or model))
        if not _MODEL_NAME.match(name) or name == ENSEMBLE:
            raise ConfigError(
                f"{where}.name: {name!r} must be letters, digits, '_' or '-' and not {ENSEMBLE!r}"
            )
        if any(s.name == name for s in specs):
            raise ConfigError(f"{where}.name: {name!r} is used by another model")
        specs.append(ModelSpec(name, model))
    return tuple(specs)


def settings_from_dict(raw: Mapping[str, Any]) -> Settings:
    """Validate a parsed TOML document into `Settings`; raises `ConfigError`."""
    known = [*_SCHEMA, "models"]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "models":
            values["models"] = _models(value)
        elif key in _SCHEMA:
            values[key] = _section(key, value)
        else:
            raise _unknown(key, known, "top level")
    settings = Settings(**values)
    kafka = _security(settings.kafka)
    if kafka is not settings.kafka:
        settings = replace(settings, kafka=kafka)
    if settings.dead_letter_topic == settings.kafka.topic:
        raise ConfigError("kafka.dead_letter_topic: must differ from kafka.topic")
    if settings.predictions_topic in (settings.kafka.topic, settings.dead_letter_topic):
        raise ConfigError("kafka.predictions_topic: must differ from kafka.topic and "
                          "kafka.dead_letter_topic")
    if settings.checkpoint.store == "kafka" and settings.state_topic in (
            settings.kafka.topic, settings.dead_letter_topic, settings.predictions_topic):
        raise ConfigError("checkpoint.topic: the state topic must be a topic of its own")
    if settings.labels_topic and settings.labels_topic in (
            settings.kafka.topic, settings.dead_letter_topic, settings.predictions_topic,
            settings.state_topic if settings.checkpoint.store == "kafka" else ""):
        raise ConfigError("labels.topic: the labels topic must be a topic of its own")
    return settings


def _security(k: KafkaSettings) -> KafkaSettings:
    """Check that the security keys fit together; with SASL and no `sasl_password`, take it
    from the environment. A key that the protocol does not use is refused rather than ignored:
    credentials set under a protocol that sends none mean a forgotten `security_protocol`."""
    protocol = k.security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if not sasl:
        for key in ("sasl_username", "sasl_password"):
            if getattr(k, key):
                raise ConfigError(f"kafka.{key}: set, but security_protocol = {protocol!r} sends "
                                  "no credentials (SASL_PLAINTEXT or SASL_SSL does)")
    if not tls:
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(k, key):
                raise ConfigError(f"kafka.{key}: set, but security_protocol = {protocol!r} does "
                                  "not use TLS (SSL or SASL_SSL does)")
    if k.ssl_keyfile and not k.ssl_certfile:
        raise ConfigError("kafka.ssl_keyfile: the key of a client certificate, but "
                          "kafka.ssl_certfile is not set")
    if not sasl:
        return k
    if not k.sasl_username:
        raise ConfigError(f"kafka.sasl_username: required with security_protocol = {protocol!r}")
    if k.sasl_password:
        return k
    password = os.environ.get(SASL_PASSWORD_ENV, "")
    if not password:
        raise ConfigError(f"kafka.sasl_password: required with security_protocol = "
                          f"{protocol!r}: set it, or the environment variable "
                          f"{SASL_PASSWORD_ENV}")
    return replace(k, sasl_password=password)


def load_settings(path: str | Path | None) -> Settings:
    """The built-in defaults when `path` is None, else the file's settings."""
    if path is None:
        return Settings()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return settings_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
