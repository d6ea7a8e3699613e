"""Settings: defaults, a full file, every class of error, and the CLI's exit status 2."""

import json
import re
import textwrap

import pytest

import driftline.app
from driftline.cli import main
from driftline.config import (
    DEFAULT_MODELS,
    CheckpointSettings,
    DriftSettings,
    KafkaSettings,
    LearningSettings,
    MetricsSettings,
    ModelSpec,
    Settings,
    load_settings,
)
from driftline.errors import ConfigError


def write(tmp_path, text, name="driftline.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path, text):
    return load_settings(write(tmp_path, text))


# --- defaults and a valid file --------------------------------------------------------------


def test_defaults():
    s = Settings()
    assert load_settings(None) == s
    assert s.kafka == KafkaSettings("127.0.0.1:9092", "events", "driftline", "earliest", "", 10_000)
    assert s.dead_letter_topic == "events.dlq"
    assert [m.name for m in s.models] == [
        "passive_aggressive", "logistic_regression", "hoeffding_tree", "knn"]
    assert s.drift.detector == "adwin"
    assert s.drift.response == "reweight"
    assert s.metrics.port == 9108
    assert s.checkpoint == CheckpointSettings()


def test_dead_letter_topic_follows_the_topic():
    assert Settings(kafka=KafkaSettings(topic="clicks")).dead_letter_topic == "clicks.dlq"
    explicit = Settings(kafka=KafkaSettings(topic="clicks", dead_letter_topic="bad"))
    assert explicit.dead_letter_topic == "bad"


def test_full_file_loads(tmp_path):
    s = load(
        tmp_path,
        """
        [kafka]
        bootstrap_servers = "broker-1:9092, broker-2:19092"
        topic = "power.prices"
        group_id = "g1"
        auto_offset_reset = "latest"
        dead_letter_topic = "power.rejected"
        max_poll_records = 100

        [[models]]
        name = "lr"
        model = "logistic_regression"

        [[models]]
        model = "tests.unit.factories:make_model"

        [drift]
        detector = "page_hinkley"
        response = "reset"
        params = { threshold = 30 }
        boost = 3
        boost_decay = 50.5
        fading = 0.9
        sharpness = 10

        [learning]
        rolling_window = 50
        reset_after_failures = 3
        max_classes = 20
        max_feature_names = 500

        [metrics]
        host = "0.0.0.0"
        port = 0

        [checkpoint]
        dir = "ckpt"
        interval_seconds = 1
        keep = 2
        """,
    )
    assert s.kafka == KafkaSettings(
        "broker-1:9092, broker-2:19092", "power.prices", "g1", "latest", "power.rejected", 100
    )
    assert s.dead_letter_topic == "power.rejected"
    assert s.models == (
        ModelSpec("lr", "logistic_regression"),
        ModelSpec("make_model", "tests.unit.factories:make_model"),
    )
    assert s.drift == DriftSettings(
        "page_hinkley", "reset", {"threshold": 30}, 3.0, 50.5, 0.9, 10.0
    )
    assert isinstance(s.drift.boost, float)
    assert s.learning == LearningSettings(50, 3, 20, 500)
    assert s.metrics == MetricsSettings("0.0.0.0", 0)
    assert s.checkpoint == CheckpointSettings("ckpt", 1.0, 2)


def test_partial_file_keeps_other_defaults(tmp_path):
    s = load(tmp_path, '[kafka]\ntopic = "t"\n')
    assert s.kafka.topic == "t"
    assert s.kafka.group_id == "driftline"
    assert s.models == DEFAULT_MODELS
    assert s.drift == DriftSettings()


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('colour = "red"\n', "top level: unknown key 'colour'"),
        (
            '[kafka]\nbootstrap_server = "h:1"\n',
            "[kafka]: unknown key 'bootstrap_server' (did you mean 'bootstrap_servers'?)",
        ),
        ('[[models]]\nmodel = "gaussian_nb"\nkind = "x"\n', "models[0]: unknown key 'kind'"),
        ('[metrics]\nport = "x"\n', "metrics.port: expected an integer"),
        ('[checkpoint]\ninterval_seconds = "fast"\n', "checkpoint.interval_seconds"),
        ("[metrics]\nport = 70000\n", "metrics.port: 70000 must be between 0 and 65535"),
        ("[drift]\nfading = 1.5\n", "drift.fading: 1.5 must be"),
        ("[drift]\nfading = 0\n", "drift.fading"),
        ("[drift]\nfading = nan\n", "drift.fading"),
        ("[metrics]\nport = true\n", "metrics.port: expected an integer"),
        ('[kafka]\nauto_offset_reset = "first"\n', "kafka.auto_offset_reset: 'first' is not one"),
        ('[drift]\ndetector = "adwn"\n', "drift.detector: 'adwn' is not one of"),
        ('[drift]\ndetector = "adwn"\n', "(did you mean 'adwin'?)"),
        ('[drift]\nresponse = "restart"\n', "drift.response"),
        (
            '[[models]]\nname = "a"\nmodel = "gaussian_nb"\n'
            '[[models]]\nname = "a"\nmodel = "no_change"\n',
            "models[1].name: 'a' is used by another model",
        ),
        ('[[models]]\nname = "ensemble"\nmodel = "gaussian_nb"\n', "models[0].name: 'ensemble'"),
        ('[[models]]\nname = "a b"\nmodel = "gaussian_nb"\n', "models[0].name: 'a b'"),
        ('[[models]]\nname = "a"\n', "models[0].model: missing"),
        ("models = []\n", "[[models]]"),
        ('[kafka]\ntopic = "bad topic!"\n', "kafka.topic: 'bad topic!' is not a valid Kafka topic"),
        ('[kafka]\ntopic = ""\n', "kafka.topic"),
        ('[kafka]\ndead_letter_topic = "a/b"\n', "kafka.dead_letter_topic"),
        ('[kafka]\nbootstrap_servers = "localhost"\n', "kafka.bootstrap_servers"),
        ('[kafka]\nbootstrap_servers = "h:99999"\n', "kafka.bootstrap_servers"),
        ("[kafka]\nmax_poll_records = 0\n", "kafka.max_poll_records"),
        ('kafka = "x"\n', "[kafka]: expected a table"),
        ('[drift]\nparams = "x"\n', "drift.params: expected a table"),
    ],
)
def test_error_names_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert expected in message
    assert message.startswith(f"{path}: ")


def test_unknown_key_lists_known_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"known keys: host, port"):
        load(tmp_path, "[metrics]\nprot = 1\n")


def test_a_moved_key_says_where_it_went(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics.rolling_window: moved to learning.rolling_wi"):
        load(tmp_path, "[metrics]\nrolling_window = 50\n")


def test_not_toml(tmp_path):
    path = write(tmp_path, "this is = = not toml\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("--config: no such file")):
        load_settings(tmp_path / "absent.toml")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)


# --- the same errors through the CLI ------------------------------------------------------


@pytest.fixture
def no_kafka(monkeypatch):
    """`serve` must fail before it opens the metrics port or reaches for Kafka."""

    def forbidden(*args, **kwargs):
        raise AssertionError("serve went past validation")

    monkeypatch.setattr(driftline.app, "StatusServer", forbidden)
    monkeypatch.setattr(driftline.app, "_wait_for_topic", forbidden)
    monkeypatch.setattr(driftline.app, "_connect", forbidden)


BAD_CONFIGS = [
    ('[kafka]\ntopik = "x"\n', "unknown key 'topik'"),
    ("[metrics]\nport = 70000\n", "metrics.port"),
    ('[[models]]\nmodel = "nope"\n', "models[0].model: unknown preset 'nope'"),
    ('[[models]]\nmodel = "no_such_module:make"\n', "models[0].model: cannot load factory"),
    ('[[models]]\nmodel = "tests.unit.factories:nothing"\n', "models[0].model"),
    ('[[models]]\nmodel = "tests.unit.factories:make_not_a_model"\n', "not a River classifier"),
    ('[[models]]\nmodel = "tests.unit.factories:make_raising"\n', "RuntimeError('boom')"),
    ("[drift]\nparams = {delt = 1}\n", "drift.params: invalid parameters for detector 'adwin'"),
    ('[drift]\ndetector = "none"\nparams = {delta = 1}\n', "drift.params"),
]


@pytest.mark.parametrize("command", ["evaluate", "serve"])
@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_cli_exit_2_on_bad_config(tmp_path, capsys, no_kafka, command, text, expected):
    path = write(tmp_path, text)
    if command == "evaluate":
        argv = ["evaluate", "--dataset", "elec", "--limit", "10", "--config", str(path)]
    else:
        argv = ["serve", "--config", str(path)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("driftline: error: ")
    assert expected in lines[0]


def test_cli_evaluate_runs_with_a_valid_config(tmp_path, capsys):
    path = write(tmp_path, '[[models]]\nmodel = "no_change"\n')
    assert main(["evaluate", "--dataset", "elec", "--limit", "10", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"events": 10' in out
    assert '"no_change"' in out


def test_cli_evaluate_rejects_a_row_beyond_max_abs_value_and_says_so(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("a,b,y\n" + "".join(
        f"{'1e308' if i == 40 else i % 7},{i % 3},{i % 2}\n" for i in range(100)),
        encoding="utf-8")
    config = write(tmp_path, "[validation]\nmax_abs_value = 1e6\n")
    assert main(["evaluate", "--csv", str(path), "--target", "y", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["events"] == 100 and report["rejections"] == {"out_of_range": 1}
    assert "1 rows not learned" in captured.err and "max_abs_value" in captured.err


def test_cli_missing_csv(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert main(["evaluate", "--csv", str(missing), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "missing.csv" in err


def test_cli_csv_without_target_column(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["evaluate", "--csv", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--target: column 'y'" in err


def test_cli_csv_requires_target(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("a,y\n1,2\n", encoding="utf-8")
    assert main(["evaluate", "--csv", str(path)]) == 2
    assert "--target" in capsys.readouterr().err


@pytest.mark.parametrize("rate", ["-1", "0", "nan", "fast"])
def test_cli_bad_argument_is_an_argparse_error(capsys, rate):
    with pytest.raises(SystemExit) as info:
        main(["publish", "--dataset", "elec", "--rate", rate])
    assert info.value.code == 2
    assert "--rate" in capsys.readouterr().err


# --- issue 11: start-up errors that used to end in a traceback ------------------------------


@pytest.mark.parametrize("command", ["evaluate", "serve"])
@pytest.mark.parametrize("package", [False, True])
def test_a_factory_module_with_a_syntax_error_exits_2(
    tmp_path, capsys, monkeypatch, no_kafka, command, package
):
    name = f"broken_{command}_{int(package)}"  # a name no other test imported
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    if package:  # the syntax error in the package the factory's module lives in
        (pkg / "__init__.py").write_text("def oops(:\n")
    (pkg / "mod.py").write_text("def factory(:\n    pass\n" if not package else "x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, '[[models]]\nmodel = "no_change"\n'
                           f'[[models]]\nmodel = "{name}.mod:factory"\n')
    if command == "evaluate":
        argv = ["evaluate", "--dataset", "elec", "--limit", "10", "--config", str(path)]
    else:
        argv = ["serve", "--config", str(path)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1
    assert "SyntaxError" in lines[0]
    assert lines[0].startswith("driftline: error: models[1].model: cannot load factory")


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_a_checkpoint_dir_that_is_not_a_folder_exits_2(tmp_path, capsys, no_kafka, where):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    directory = blocker if where == "file" else blocker / "state"
    path = write(tmp_path, f'[[models]]\nmodel = "no_change"\n[checkpoint]\ndir = "{directory}"\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("driftline: error: checkpoint.dir: ")


def test_validation_limits_load_and_are_checked(tmp_path):
    s = load(tmp_path, """
        [validation]
        max_abs_value = 1e6
        max_features = 20
        max_label_chars = 32
        max_id_chars = 64
        max_feature_name_chars = 48
        max_string_value_chars = 100
        """)
    v = s.validation
    assert (v.max_abs_value, v.max_features, v.max_label_chars, v.max_id_chars,
            v.max_feature_name_chars, v.max_string_value_chars) == (1e6, 20, 32, 64, 48, 100)
    decoder = v.decoder()
    assert decoder.limits == v.limits()
    assert decoder.decode(b'{"x": {"a": 2e6}}').reason == "out_of_range"
    defaults = Settings().validation
    assert (defaults.max_abs_value, defaults.max_features) == (1e100, 1000)
    for text, key in [("max_abs_value = 0", "max_abs_value"),
                      ("max_abs_value = inf", "max_abs_value"),
                      ("max_features = 0", "max_features"),
                      ('max_label_chars = "long"', "max_label_chars"),
                      ("max_string_value_chars = -1", "max_string_value_chars")]:
        with pytest.raises(ConfigError, match=rf"validation\.{key}"):
            load(tmp_path, f"[validation]\n{text}\n")


# --- a secured cluster --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[kafka]\nsecurity_protocol = "SASL"\n', "kafka.security_protocol: 'SASL' is not one of"),
        ('[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "u"\nsasl_password = "p"\n'
         'sasl_mechanism = "SCRAM"\n', "kafka.sasl_mechanism: 'SCRAM' is not one of"),
        ('[kafka]\nsasl_username = "u"\n', "kafka.sasl_username: set, but security_protocol = "
                                           "'PLAINTEXT' sends no credentials"),
        ('[kafka]\nsecurity_protocol = "SSL"\nsasl_password = "p"\n', "kafka.sasl_password: set"),
        ('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_password = "p"\n',
         "kafka.sasl_username: required with security_protocol = 'SASL_PLAINTEXT'"),
        ('[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "u"\n',
         "kafka.sasl_password: required with security_protocol = 'SASL_SSL': set it, or the "
         "environment variable DRIFTLINE_KAFKA_SASL_PASSWORD"),
        ('[kafka]\nsecurity_protocol = "SSL"\nssl_cafile = "/no/such/ca.pem"\n',
         "kafka.ssl_cafile: no such file: /no/such/ca.pem"),
        ('[kafka]\nssl_check_hostname = "yes"\n', "kafka.ssl_check_hostname: expected true or"),
    ],
)
def test_security_settings_that_do_not_fit_name_the_key(tmp_path, monkeypatch, text, expected):
    monkeypatch.delenv("DRIFTLINE_KAFKA_SASL_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert expected in str(info.value)


def test_tls_keys_without_tls_are_refused(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(ConfigError, match=re.escape(
            "kafka.ssl_cafile: set, but security_protocol = 'SASL_PLAINTEXT' does not use TLS")):
        load(tmp_path, f'[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_username = "u"\n'
                       f'sasl_password = "p"\nssl_cafile = "{tmp_path / "ca.pem"}"\n')
    key = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match=re.escape("kafka.ssl_keyfile: the key of a client")):
        load(tmp_path, f'[kafka]\nsecurity_protocol = "SSL"\nssl_keyfile = "{key}"\n')


def test_a_sasl_password_comes_from_the_environment_and_is_never_shown(tmp_path, monkeypatch):
    from consumers.kafka_io import _connection
    from driftline.cluster import cluster

    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "hunter2")
    (tmp_path / "ca.pem").write_text("x")
    settings = load(tmp_path, '[kafka]\nbootstrap_servers = "b1:9093,b2:9093"\n'
                              'security_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n'
                              f'sasl_username = "svc"\nssl_cafile = "{tmp_path / "ca.pem"}"\n')
    assert settings.kafka.sasl_password == "hunter2"
    brokers = cluster(settings.kafka)
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(brokers)
    assert str(brokers) == "b1:9093,b2:9093"  # what error messages name
    assert _connection(brokers) == {
        "bootstrap_servers": "b1:9093,b2:9093", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc",
        "sasl_plain_password": "hunter2", "ssl_check_hostname": True,
        "ssl_cafile": str(tmp_path / "ca.pem"),
    }
    # the file's password wins over the environment's
    file_set = load(tmp_path, '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\n'
                              'sasl_username = "svc"\nsasl_password = "from-file"\n')
    assert file_set.kafka.sasl_password == "from-file"
    assert _connection(cluster(Settings().kafka)) == {"bootstrap_servers": "127.0.0.1:9092",
                                                      "security_protocol": "PLAINTEXT"}
