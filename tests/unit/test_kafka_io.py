"""The Kafka module's own logic that needs no broker: naming why a connection failed."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import KafkaTimeoutError

from consumers.errors import BrokerUnavailable
from consumers.kafka_io import _broker


def test_a_failure_names_a_refused_login_logged_during_the_call_only():
    client_log = logging.getLogger("kafka.net.transport")
    client_log.error("<KafkaTCPTransport>: Abort ([Error 58] SaslAuthenticationFailedError: "
                     "SaslAuthenticationFailedError: Authentication failed: Invalid username)")
    # logged before the call: not this call's cause
    with pytest.raises(BrokerUnavailable) as before, _broker("poll events"):
        raise KafkaTimeoutError("Unable to bootstrap from b:9092")
    assert "refused" not in str(before.value)

    with pytest.raises(BrokerUnavailable) as during, _broker("poll events"):
        client_log.error("<KafkaConnection>: Connection failed: KafkaConnectionError: Handshake "
                         "failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
        raise KafkaTimeoutError("Unable to bootstrap from b:9092")
    assert str(during.value) == (
        "poll events: KafkaTimeoutError: KafkaTimeoutError: Unable to bootstrap from b:9092; "
        "the TLS handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

    with pytest.raises(BrokerUnavailable) as login, _broker("poll events"):
        client_log.error("<KafkaTCPTransport>: Abort ([Error 58] SaslAuthenticationFailedError: "
                         "SaslAuthenticationFailedError: Authentication failed: Invalid "
                         "username or password)")
        raise KafkaTimeoutError("Unable to bootstrap from b:9092")
    assert str(login.value).endswith(
        "; the broker refused the login: Authentication failed: Invalid username or password")
