"""Secured brokers: a listener that asks for SASL credentials, one that speaks TLS. The service
and `publish` reach them with the `[kafka]` security keys (the password from the environment);
a wrong password or an untrusted certificate is named as such (the client itself reports only
that it cannot bootstrap)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.support import (
    Service,
    _bindable,
    broker_port,
    driftline,
    free_port,
    sample,
    wait_for,
    write_config,
)


def _ports() -> int:
    """A broker port whose next two (the controller's, the SASL listener's) are free too."""
    for _ in range(50):
        port = broker_port()
        if _bindable(port + 2):
            return port
    raise RuntimeError("no three free ports in a row")


def _learns(config: Path, metrics_port: int, log: Path) -> None:
    """`publish` 300 Elec2 events through the config's brokers, and the service learns them."""
    driftline("publish", "--config", str(config), "--dataset", "elec", "--limit", "300")
    with Service(config, log) as service:
        wait_for(lambda: sample(metrics_port, "driftline_events_total", outcome="learned") == 300,
                 timeout=90, what="the events learned through the secured listener")
        assert service.stop() == 0


def _publish_fails(config: Path) -> str:
    """`publish` through the config's brokers, which must fail: what it printed."""
    done = driftline("publish", "--config", str(config), "--dataset", "elec", "--limit", "10",
                     check=False)
    assert done.returncode != 0
    return done.stderr


def test_the_service_learns_through_a_sasl_listener_and_a_wrong_password_is_named(
        tmp_path, monkeypatch):
    from driftline import broker

    port = _ports()
    sasl = port + 2
    broker.up(port, sasl_port=sasl, sasl_users={"alice": "s3cret"})
    try:
        metrics_port = free_port()
        config = write_config(
            tmp_path / "driftline.toml", f"127.0.0.1:{sasl}", "secured-events", metrics_port,
            kafka='security_protocol = "SASL_PLAINTEXT"\nsasl_username = "alice"\n')
        monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "s3cret")
        _learns(config, metrics_port, tmp_path / "serve.log")

        monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "pw-WRONG-7421")
        stderr = _publish_fails(config)
        # kafka-python reads the broker's answer on some tries only (on others it sees the
        # connection closed first): the refusal when one came, else the hint
        assert ("the broker refused the login: Authentication failed" in stderr
                or "a refused SASL login can show as this too" in stderr), stderr
        assert "pw-WRONG-7421" not in stderr and "s3cret" not in stderr
        # the service retries, and each warning says why
        with Service(config, tmp_path / "refused.log") as refused:
            wait_for(lambda: "the broker refused the login" in refused.output(), timeout=90,
                     what="the service's warning of a refused login")
            assert refused.stop() == 0
        assert "pw-WRONG-7421" not in refused.output()
    finally:
        broker.down(port, delete_data=True)


def _self_signed(folder: Path, password: str) -> tuple[Path, Path]:
    """A broker certificate for 127.0.0.1, self-signed, in a PKCS12 keystore, and the same
    certificate in PEM for the clients to trust: made by keytool, which comes with Java."""
    keytool = shutil.which("keytool")
    if keytool is None:
        pytest.fail("keytool is not installed (it comes with Java 17: make system-deps)")
    store, pem = folder / "broker.p12", folder / "broker-cert.pem"
    common = ["-alias", "broker", "-keystore", str(store), "-storetype", "PKCS12",
              "-storepass", password]
    subprocess.run([keytool, "-genkeypair", *common, "-keypass", password, "-keyalg", "RSA",
                    "-keysize", "2048", "-validity", "2", "-dname", "CN=localhost",
                    "-ext", "SAN=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([keytool, "-exportcert", "-rfc", *common, "-file", str(pem)],
                   check=True, capture_output=True, timeout=120)
    return store, pem


def test_the_service_learns_through_a_tls_listener_and_an_untrusted_one_is_named(
        tmp_path, monkeypatch):
    """`security_protocol = "SSL"` with the broker's certificate authority in `ssl_cafile`,
    the host name checked; a certificate the client does not trust is named as the cause."""
    from driftline import broker

    port = _ports()
    tls = port + 2
    store, pem = _self_signed(tmp_path, "changeit")
    plain = broker._server_properties

    def with_tls(p, data, *args, **kwargs):
        """The local broker's properties and a listener SSL on `tls` (the broker module
        offers SASL only)."""
        text = plain(p, data, *args, **kwargs)
        for key, extra in (("listeners", f",SSL://127.0.0.1:{tls}"),
                           ("advertised.listeners", f",SSL://127.0.0.1:{tls}"),
                           ("listener.security.protocol.map", ",SSL:SSL")):
            text = re.sub(rf"^({re.escape(key)}=.*)$", lambda m, e=extra: m.group(1) + e, text,
                          count=1, flags=re.M)
        return text + (f"ssl.keystore.type=PKCS12\nssl.keystore.location={store.as_posix()}\n"
                       "ssl.keystore.password=changeit\nssl.key.password=changeit\n")

    monkeypatch.setattr(broker, "_server_properties", with_tls)
    broker.up(port)
    try:
        metrics_port = free_port()
        config = write_config(
            tmp_path / "driftline.toml", f"127.0.0.1:{tls}", "tls-events", metrics_port,
            kafka=f'security_protocol = "SSL"\nssl_cafile = "{pem.as_posix()}"\n')
        _learns(config, metrics_port, tmp_path / "serve.log")

        # A certificate authority that did not sign the broker's certificate
        (tmp_path / "other").mkdir()
        _, stranger = _self_signed(tmp_path / "other", "changeit")
        config.write_text(config.read_text().replace(pem.as_posix(), stranger.as_posix()))
        stderr = _publish_fails(config)
        assert "the TLS handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED]" in stderr, stderr
    finally:
        broker.down(port, delete_data=True)
