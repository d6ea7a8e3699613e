"""A broker that asks for SASL credentials: the service and `publish` reach it with the
`[kafka]` security keys, the password from the environment; a wrong password is named as
such by both (the client itself reports only that it cannot bootstrap)."""

from __future__ import annotations

from tests.integration.support import (
    Service,
    _bindable,
    broker_port,
    driftline,
    free_port,
    sample,
    wait_for,
)


def _ports() -> int:
    """A broker port whose next two (the controller's, the SASL listener's) are free too."""
    for _ in range(50):
        port = broker_port()
        if _bindable(port + 2):
            return port
    raise RuntimeError("no three free ports in a row")


def test_the_service_learns_through_a_sasl_listener_and_a_wrong_password_is_named(
        tmp_path, monkeypatch):
    from driftline import broker

    port = _ports()
    sasl = port + 2
    broker.up(port, sasl_port=sasl, sasl_users={"alice": "s3cret"})
    try:
        topic = "secured-events"
        metrics_port = free_port()
        config = tmp_path / "driftline.toml"
        config.write_text(
            f'[kafka]\nbootstrap_servers = "127.0.0.1:{sasl}"\ntopic = "{topic}"\n'
            'security_protocol = "SASL_PLAINTEXT"\nsasl_username = "alice"\n\n'
            f'[metrics]\nport = {metrics_port}\n\n[checkpoint]\ndir = "{tmp_path / "state"}"\n')
        monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "s3cret")
        driftline("publish", "--config", str(config), "--dataset", "elec", "--limit", "300")
        with Service(config, tmp_path / "serve.log") as service:
            wait_for(lambda: sample(metrics_port, "driftline_events_total",
                                    outcome="learned") == 300,
                     timeout=90, what="the events learned through the SASL listener")
            assert service.stop() == 0

        monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "pw-WRONG-7421")
        done = driftline("publish", "--config", str(config), "--dataset", "elec", "--limit",
                         "10", check=False)
        assert done.returncode != 0
        assert "the broker refused the login: Authentication failed" in done.stderr, done.stderr
        assert "pw-WRONG-7421" not in done.stderr and "s3cret" not in done.stderr
        # the service retries, and each warning says why
        with Service(config, tmp_path / "refused.log") as refused:
            wait_for(lambda: "the broker refused the login" in refused.output(), timeout=90,
                     what="the service's warning of a refused login")
            assert refused.stop() == 0
        assert "pw-WRONG-7421" not in refused.output()
    finally:
        broker.down(port, delete_data=True)
