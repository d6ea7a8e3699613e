"""The Kafka module's own logic that needs no broker: naming why a connection failed, sizing
a poll."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import KafkaTimeoutError

from consumers.errors import BrokerUnavailable
from consumers.kafka_io import BATCH_SECONDS, MIN_POLL_RECORDS, _broker, poll_records


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


def test_a_poll_takes_about_half_a_second_of_the_callers_work_within_its_bounds():
    # 40,000 events/s: 20,000 in half a second, above the cap
    assert poll_records(4_000, 0.1, cap=10_000) == 10_000
    # 8,000 events/s: 4,000
    assert poll_records(800, 0.1, cap=10_000) == int(8_000 * BATCH_SECONDS)
    # a slow model set (100 events/s): never below the floor
    assert poll_records(100, 1.0, cap=10_000) == MIN_POLL_RECORDS
    # a cap below the floor is the cap (max_poll_records = 1 polls one record)
    assert poll_records(100, 1.0, cap=1) == 1
    assert poll_records(4_000, 0.1, cap=1) == 1
    # a batch handed on in no measurable time
    assert poll_records(10, 0.0, cap=10_000) == 10_000
