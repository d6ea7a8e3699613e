"""The brokers to connect to, as the `[kafka]` settings describe them (address and security)."""

from __future__ import annotations

from consumers.kafka_io import Cluster
from driftline.config import KafkaSettings


def cluster(k: KafkaSettings) -> Cluster:
    """`k`'s brokers and how to reach them, for every client the service starts."""
    return Cluster(
        k.bootstrap_servers,
        protocol=k.security_protocol,
        mechanism=k.sasl_mechanism,
        username=k.sasl_username,
        password=k.sasl_password,
        cafile=k.ssl_cafile,
        certfile=k.ssl_certfile,
        keyfile=k.ssl_keyfile,
        check_hostname=k.ssl_check_hostname,
    )
