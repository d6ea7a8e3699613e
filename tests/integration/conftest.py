"""Fixtures for tests that need a real Kafka broker.

The broker comes from, in order:
1. `KAFKA_BOOTSTRAP_SERVERS`, if set (a broker someone else runs);
2. a Docker engine that answers: an `apache/kafka:4.1.1` container in KRaft mode (testcontainers);
3. otherwise driftline's own local broker (`driftline.broker`, Java + Maven) on port 39092
   (`DRIFTLINE_TEST_KAFKA_PORT` overrides), stopped at the end only if this session started it.

Every test in this folder is marked `integration` (deselect with `-m "not integration"`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consumers import kafka_io

KAFKA_IMAGE = "apache/kafka:4.1.1"
DEFAULT_LOCAL_PORT = 39092
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class KafkaService:
    """Where the session's broker runs and who provides it."""

    bootstrap: str
    kind: str  # "env", "docker" or "local"
    port: int | None = None  # the local broker's port, for kind == "local"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pytest hands this hook every collected item, not only this folder's: filter by path.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _docker_engine_answers() -> bool:
    try:
        import docker  # comes with testcontainers

        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no package, no socket, no permission: all mean "no Docker"
        return False


def _apache_kafka_container() -> Any:
    """A testcontainers Kafka container running the official `apache/kafka` image in KRaft mode.

    testcontainers' `KafkaContainer` targets Confluent's image (its start script sources
    /etc/confluent/docker/*, and `with_kraft()` rejects tags below 7.0.0), so this subclass
    keeps its start/wait machinery and swaps the image-specific parts for the Apache image,
    whose entry script `/etc/kafka/docker/run` turns `KAFKA_*` variables into server.properties.
    """
    from testcontainers.community.kafka import KafkaContainer

    class ApacheKafkaContainer(KafkaContainer):
        def __init__(self, image: str = KAFKA_IMAGE) -> None:
            # PLAINTEXT on 9093 is the exposed port for clients on the host; BROKER on 9092 is
            # for inter-broker traffic inside the container.
            super().__init__(image)
            self.kraft_enabled = True
            self.env.pop("KAFKA_BROKER_ID", None)  # KRaft uses node.id

        def configure(self) -> None:
            self.wait_for = re.compile(r".*Kafka Server started.*")
            self.with_envs(
                CLUSTER_ID=self.cluster_id,
                KAFKA_NODE_ID="1",
                KAFKA_PROCESS_ROLES="broker,controller",
                KAFKA_LISTENERS=f"{self.listeners},CONTROLLER://0.0.0.0:9094",
                KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                    f"{self.security_protocol_map},CONTROLLER:PLAINTEXT"
                ),
                KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
                KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
                KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
                KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
                KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
                KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
                KAFKA_NUM_PARTITIONS="1",
                KAFKA_AUTO_CREATE_TOPICS_ENABLE="true",
            )

        def tc_start(self) -> None:
            # The host port is known only once the container runs, so the advertised listener
            # is written into the script the container's command waits for.
            host = self.get_container_host_ip()
            port = self.get_exposed_port(self.port)
            script = (
                "#!/bin/sh\n"
                "export KAFKA_ADVERTISED_LISTENERS="
                f"{self.listener_name}://{host}:{port},BROKER://localhost:9092\n"
                "exec /etc/kafka/docker/run\n"
            )
            self.create_file(script.encode(), KafkaContainer.TC_START_SCRIPT)

    return ApacheKafkaContainer()


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[KafkaService]:
    """The session's Kafka broker; see the module docstring for where it comes from."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        yield KafkaService(from_env, "env")
        return

    if _docker_engine_answers():
        container = _apache_kafka_container()
        container.start(timeout=120)
        try:
            yield KafkaService(container.get_bootstrap_server(), "docker")
        finally:
            container.stop()
        return

    from driftline import broker

    port = int(os.environ.get("DRIFTLINE_TEST_KAFKA_PORT") or DEFAULT_LOCAL_PORT)
    already_up = kafka_io.broker_ready(broker.bootstrap_for(port))
    bootstrap = broker.up(port, echo=lambda msg: print(f"[kafka] {msg}"))
    try:
        yield KafkaService(bootstrap, "local", port)
    finally:
        # Leave a broker someone else started (a dev's `driftline kafka up`) running.
        if not already_up:
            broker.down(port, echo=lambda msg: print(f"[kafka] {msg}"))


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: KafkaService) -> str:
    """Bootstrap servers of the session's broker."""
    return kafka_service.bootstrap


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """A factory: `new_topic(partitions=1)` creates a fresh, uniquely named topic."""
    # Test ids may hold brackets, slashes, spaces...; topics allow [a-zA-Z0-9._-] only.
    stem = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name).strip("-")[:80]

    def make(partitions: int = 1) -> str:
        name = f"test-{stem}-{uuid.uuid4().hex[:8]}"
        kafka_io.create_topic(kafka_bootstrap, name, partitions=partitions)
        return name

    return make
