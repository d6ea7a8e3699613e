"""The local broker's optional SASL/PLAIN listener: its server.properties and argument errors.

No broker is started here; tests/integration covers a running one.
"""

from pathlib import Path

import pytest

from driftline import broker
from driftline.broker import _server_properties
from driftline.cli import build_parser
from driftline.errors import BrokerError

DATA = Path("/tmp/driftline-test/data")

# Today's file, byte for byte: a broker without SASL must not change.
PLAIN = """\
# Written by driftline at each `up`; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://127.0.0.1:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
num.partitions=1
auto.create.topics.enable=true
"""


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))


def test_without_sasl_the_file_is_unchanged() -> None:
    expected = PLAIN.format(data=DATA.resolve().as_posix())
    assert _server_properties(9092, DATA) == expected
    assert _server_properties(9092, DATA, None, None) == expected
    assert "sasl" not in expected.lower()


def test_with_sasl_a_second_listener_and_the_users() -> None:
    text = _server_properties(9092, DATA, 9094, {"alice": "s3cret", "bob": "pw"})
    p = props(text)
    assert p["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_PLAINTEXT://127.0.0.1:9094"
    )
    assert p["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094"
    )
    assert p["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )
    assert p["inter.broker.listener.name"] == "PLAINTEXT"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert p["sasl.enabled.mechanisms"] == "PLAIN"
    assert p["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'user_alice="s3cret" user_bob="pw";'
    )
    # Everything else is as without SASL.
    plain = props(_server_properties(9092, DATA))
    changed = {k for k in p if p[k] != plain.get(k)}
    assert changed == {
        "listeners",
        "advertised.listeners",
        "listener.security.protocol.map",
        "sasl.enabled.mechanisms",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config",
    }


def test_passwords_are_escaped_for_jaas_and_properties() -> None:
    password = 'a"b\\c d=#:\n\u00e9\U0001f600'
    text = _server_properties(9092, DATA, 9094, {"x.y-z_1": password})
    line = next(x for x in text.splitlines() if x.startswith("listener.name.sasl_plaintext"))
    # JAAS: \" and \\ and \n; then .properties: each backslash doubled, non-ASCII as \uXXXX.
    assert line.endswith(r'user_x.y-z_1="a\\"b\\\\c d=#:\\n\u00e9\ud83d\ude00";')
    assert line.isascii()


@pytest.mark.parametrize(
    ("sasl_port", "users", "message"),
    [
        (9092, {"alice": "pw"}, "clashes with the broker's own ports"),
        (9093, {"alice": "pw"}, "clashes with the broker's own ports"),
        (9094, None, "needs at least one user"),
        (9094, {}, "needs at least one user"),
        (None, {"alice": "pw"}, "need a sasl_port"),
        (70000, {"alice": "pw"}, "must be 1-65535"),
        (9094, {"": "pw"}, "SASL user name ''"),
        (9094, {"a b": "pw"}, "SASL user name 'a b'"),
        (9094, {'a"=': "pw"}, "SASL user name"),
        (9094, {"alice": ""}, "non-empty password"),
    ],
)
def test_bad_sasl_arguments(sasl_port, users, message) -> None:
    with pytest.raises(BrokerError, match=message):
        _server_properties(9092, DATA, sasl_port, users)


def test_up_checks_the_arguments_before_anything_else(monkeypatch) -> None:
    def no(*args, **kwargs):
        raise AssertionError("should not get this far")

    monkeypatch.setattr(broker, "broker_ready", no)
    monkeypatch.setattr(broker, "_start", no)
    with pytest.raises(BrokerError, match="clashes"):
        broker.up(39292, sasl_port=39293, sasl_users={"alice": "pw"}, echo=no)
    with pytest.raises(BrokerError, match="needs at least one user"):
        broker.up(39292, sasl_port=39294, echo=no)
    with pytest.raises(BrokerError, match="need a sasl_port"):
        broker.up(39292, sasl_users={"alice": "pw"}, echo=no)


def test_up_refuses_a_running_broker_without_that_listener(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DRIFTLINE_HOME", str(tmp_path))
    monkeypatch.setattr(broker, "broker_ready", lambda *a, **k: True)
    state = tmp_path / "broker-39292"
    state.mkdir()
    (state / "server.properties").write_text(_server_properties(39292, state / "data"))
    assert broker.up(39292, echo=lambda _: None) == "127.0.0.1:39292"
    with pytest.raises(BrokerError, match="stop it first"):
        broker.up(39292, sasl_port=39294, sasl_users={"alice": "pw"}, echo=lambda _: None)
    users = {"alice": "pw"}
    (state / "server.properties").write_text(
        _server_properties(39292, state / "data", 39294, users)
    )
    assert broker.up(39292, sasl_port=39294, sasl_users=users, echo=lambda _: None)


def test_cli_passes_the_sasl_flags() -> None:
    args = build_parser().parse_args(
        ["kafka", "up", "--port", "39292", "--sasl-port", "39294",
         "--sasl-user", "alice:s3cret", "--sasl-user", "bob:a:b"]
    )  # fmt: skip
    assert args.sasl_port == 39294
    assert args.sasl_user == [("alice", "s3cret"), ("bob", "a:b")]
    args = build_parser().parse_args(["kafka", "up"])
    assert args.sasl_port is None and args.sasl_user is None


@pytest.mark.parametrize("value", ["alice", ":pw", "alice:"])
def test_cli_rejects_a_malformed_sasl_user(value, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["kafka", "up", "--sasl-user", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--sasl-user" in err
    assert "NAME:PASSWORD" in err


def test_cli_calls_up_with_the_users(monkeypatch) -> None:
    from driftline.cli import main

    calls = []
    monkeypatch.setattr(broker, "up", lambda port, **kw: calls.append((port, kw)) or "x")
    assert main(["kafka", "up", "--port", "39292"]) == 0
    assert main(["kafka", "up", "--port", "39292", "--sasl-port", "39294",
                 "--sasl-user", "alice:s3cret"]) == 0  # fmt: skip
    assert calls == [
        (39292, {"sasl_port": None, "sasl_users": None}),
        (39292, {"sasl_port": 39294, "sasl_users": {"alice": "s3cret"}}),
    ]
