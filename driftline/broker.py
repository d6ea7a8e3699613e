"""A local single-node Apache Kafka broker (KRaft mode) for machines without Docker.

`up()` fetches the Kafka jars once with Maven, formats the storage on first start and runs
`kafka.Kafka` as a detached Java process; `down()` stops it. Everything lives under
`$DRIFTLINE_HOME` (default `~/.cache/driftline`):

    kafka-4.1.1/libs/        the jars (the classpath)
    broker-<port>/           server.properties, log4j2.properties, data/, broker.pid, *.log

With `sasl_port` and `sasl_users`, `up()` also opens a SASL_PLAINTEXT listener (mechanism
PLAIN, those users), to try driftline against a secured cluster locally; the PLAINTEXT
listener stays, for the broker itself and for `down()`/`status()`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from consumers.kafka_io import broker_ready
from driftline.errors import BrokerError

__all__ = ["KAFKA_VERSION", "bootstrap_for", "down", "ensure_jars", "home", "status", "up"]

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
# Pinned so every Maven version resolves the same plugin (each Maven ships another default).
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
HOST = "127.0.0.1"

_NEEDS = (
    "The local Kafka broker needs Java 17+ (`java`) and Maven (`mvn`) on PATH; "
    "or, with Docker, run `docker compose up` instead."
)

_POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by driftline: resolves the jars of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.driftline</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <!-- The broker logs through SLF4J 1.x; without a binding it would log nothing. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""

# Loggers that repeat themselves at INFO: config dumps, requests, and one line per partition
# (there are 50 __consumer_offsets partitions) at every start. Group joins etc. stay at INFO.
_QUIET_LOGGERS = (
    "kafka.request.logger",
    "kafka.network.RequestChannel$",
    "state.change.logger",
    "kafka.log.LogCleaner",
    "kafka.log.LogManager",
    "kafka.cluster.Partition",
    "org.apache.kafka.common.config.AbstractConfig",
    "org.apache.kafka.common.utils.AppInfoParser",
    "org.apache.kafka.common.metrics",
    "org.apache.kafka.storage.internals.log",
    "org.apache.kafka.coordinator.common.runtime.CoordinatorRuntime",
    "org.apache.kafka.controller.ReplicationControlManager",
    "org.apache.kafka.controller.PartitionChangeBuilder",
)


def home() -> Path:
    """The folder holding the jars and the per-port broker state."""
    return Path(os.environ.get("DRIFTLINE_HOME") or "~/.cache/driftline").expanduser()


def bootstrap_for(port: int) -> str:
    return f"{HOST}:{port}"


def _kafka_dir() -> Path:
    return home() / f"kafka-{KAFKA_VERSION}"


def _libs_dir() -> Path:
    return _kafka_dir() / "libs"


def _state_dir(port: int) -> Path:
    return home() / f"broker-{port}"


def _pid_file(port: int) -> Path:
    return _state_dir(port) / "broker.pid"


def _broker_log(port: int) -> Path:
    return _state_dir(port) / "broker.log"


def _stdout_log(port: int) -> Path:
    return _state_dir(port) / "stdout.log"


# ----------------------------------------------------------------------------- tools


def _java() -> str:
    """Path of a Java 17+ executable, preferring $JAVA_HOME."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if not java:
        raise BrokerError(f"`java` was not found. {_NEEDS}")
    try:
        probe = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"`{java} -version` failed: {exc}. {_NEEDS}") from exc
    # `java -version` prints to stderr: 'openjdk version "17.0.15"' or 'java version "1.8.0_x"'.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', probe.stderr + probe.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise BrokerError(f"{java} is Java {major}; Kafka {KAFKA_VERSION} needs 17+. {_NEEDS}")
    return java


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(f"`mvn` (Maven) was not found. {_NEEDS}")
    return mvn


# ----------------------------------------------------------------------------- jars


def _jars_present(libs: Path) -> bool:
    return (libs / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar").is_file()


def ensure_jars(echo: Callable[[str], None] = print) -> Path:
    """The folder of broker jars; downloads them with Maven the first time."""
    libs = _libs_dir()
    if _jars_present(libs):
        return libs
    mvn = _mvn()
    kafka_dir = _kafka_dir()
    kafka_dir.mkdir(parents=True, exist_ok=True)
    pom = kafka_dir / "pom.xml"
    _write_atomic(pom, _POM)
    # Download into a fresh folder and rename it at the end: a half-finished download
    # (network failure, Ctrl-C) must never look like a complete `libs`.
    tmp = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=kafka_dir))
    echo(f"Fetching Apache Kafka {KAFKA_VERSION} jars with Maven (once) into {libs} ...")
    cmd = [
        mvn, "-q", "-B", "-f", str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    try:
        try:
            done = subprocess.run(
                cmd, cwd=kafka_dir, capture_output=True, text=True, timeout=1800, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("Maven did not finish fetching the Kafka jars in 30 min") from exc
        if done.returncode != 0 or not _jars_present(tmp):
            out = _tail_text(done.stdout + done.stderr, 30)
            raise BrokerError(
                f"Maven could not fetch the Kafka jars (exit {done.returncode}):\n{out}\n"
                f"(command: {' '.join(cmd)})"
            )
        try:
            tmp.rename(libs)
        except OSError:
            # Another process finished first; its folder is just as good.
            if not _jars_present(libs):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return libs


# ----------------------------------------------------------------------------- config


# A user name becomes the JAAS option key `user_<name>`, which Kafka parses as one word.
_SASL_USER_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _check_sasl(port: int, sasl_port: int | None, sasl_users: Mapping[str, str] | None) -> None:
    if sasl_port is None and not sasl_users:
        return
    if sasl_port is None:
        raise BrokerError("sasl_users need a sasl_port (the port of the SASL_PLAINTEXT listener)")
    if not sasl_users:
        raise BrokerError(f"sasl_port {sasl_port} needs at least one user (sasl_users)")
    if sasl_port in (port, port + 1):
        raise BrokerError(
            f"sasl_port {sasl_port} clashes with the broker's own ports "
            f"({port} for PLAINTEXT, {port + 1} for the controller); choose another"
        )
    if not 0 < sasl_port < 65536:
        raise BrokerError(f"sasl_port must be 1-65535, got {sasl_port}")
    for name, password in sasl_users.items():
        if not _SASL_USER_NAME.fullmatch(name):
            raise BrokerError(
                f"SASL user name {name!r}: use only letters, digits, '.', '_' and '-'"
            )
        if not password:
            # Kafka's PLAIN server refuses an empty password at every login.
            raise BrokerError(f"SASL user {name!r} needs a non-empty password")


def _jaas_quote(text: str) -> str:
    # Kafka reads JAAS options with java.io.StreamTokenizer: backslash escapes in "...".
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _prop_value(text: str) -> str:
    """`text` escaped as a Java .properties value (read as ISO-8859-1 by Kafka)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            # Anything else as \uXXXX (UTF-16 code units, so a surrogate pair above U+FFFF).
            units = ch.encode("utf-16-be")
            out += [f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)]
    value = "".join(out)
    # Leading blanks would be taken as part of the separator.
    return "\\" + value if value.startswith(" ") else value


def _server_properties(
    port: int,
    data_dir: Path,
    sasl_port: int | None = None,
    sasl_users: Mapping[str, str] | None = None,
) -> str:
    _check_sasl(port, sasl_port, sasl_users)
    controller = port + 1
    listeners = f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}"
    advertised = f"PLAINTEXT://{HOST}:{port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    sasl: dict[str, str] = {}
    if sasl_port is not None and sasl_users:
        listeners += f",SASL_PLAINTEXT://{HOST}:{sasl_port}"
        advertised += f",SASL_PLAINTEXT://{HOST}:{sasl_port}"
        protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        users = " ".join(f"user_{name}={_jaas_quote(pw)}" for name, pw in sasl_users.items())
        sasl = {
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": _prop_value(
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            ),
        }
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        **sasl,
        "log.dirs": _prop_path(data_dir),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # One partition for the internal offsets topic: a single-node broker starts faster.
        "offsets.topic.num.partitions": "1",
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
    }
    lines = ["# Written by driftline at each `up`; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _log4j2_properties(log_file: Path) -> str:
    path = _prop_path(log_file)
    lines = [
        "# Written by driftline at each `up`; edits are overwritten.",
        "status = warn",
        "name = driftline-broker",
        "appender.file.type = RollingFile",
        "appender.file.name = FILE",
        f"appender.file.fileName = {path}",
        f"appender.file.filePattern = {path}.%i",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "appender.file.policies.type = Policies",
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size = 10MB",
        "appender.file.strategy.type = DefaultRolloverStrategy",
        "appender.file.strategy.max = 3",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = FILE",
    ]
    for i, name in enumerate(_QUIET_LOGGERS):
        lines += [f"logger.quiet{i}.name = {name}", f"logger.quiet{i}.level = WARN"]
    return "\n".join(lines) + "\n"


def _prop_path(path: Path) -> str:
    # Java .properties treat backslash as an escape; forward slashes work on every OS.
    return path.resolve().as_posix()


def _write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if private:  # holds passwords: readable by the owner only, from the first byte
        tmp.unlink(missing_ok=True)
        tmp.touch(mode=0o600)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cluster_id() -> str:
    """A random cluster id in Kafka's format (url-safe base64 of 16 bytes, no padding)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Like Kafka's Uuid.randomUuid: a leading '-' would read as a command-line option.
        if not cid.startswith("-"):
            return cid


def _java_cmd(java: str, port: int, main: str, *args: str) -> list[str]:
    state = _state_dir(port)
    return [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={(state / 'log4j2.properties').resolve().as_uri()}",
        "-cp",
        # Java expands the trailing `*` itself; no shell is involved.
        os.path.join(_libs_dir().resolve(), "*"),
        main,
        *args,
    ]


def _format_storage(java: str, port: int, echo: Callable[[str], None]) -> None:
    state = _state_dir(port)
    cluster_id = _cluster_id()
    echo(f"Formatting Kafka storage in {state / 'data'} (cluster id {cluster_id}) ...")
    cmd = _java_cmd(
        java, port, "kafka.tools.StorageTool",
        "format", f"--cluster-id={cluster_id}", "--config", str(state / "server.properties"),
    )  # fmt: skip
    try:
        done = subprocess.run(
            cmd, cwd=state, capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError("formatting the Kafka storage took over 5 min") from exc
    if done.returncode != 0:
        out = _tail_text(done.stdout + done.stderr, 20)
        raise BrokerError(f"formatting the Kafka storage failed (exit {done.returncode}):\n{out}")


# ----------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> str | None:
    """The command line of `pid`, or None when no such process runs."""
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    # No /proc (macOS): ask ps.
    try:
        done = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _alive(pid: int) -> bool:
    # A broker started by this very process stays a zombie until reaped; reap it first.
    with contextlib.suppress(ChildProcessError, OSError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _our_broker_pid(port: int) -> int | None:
    """The pid from the pid file if that process still runs our broker for `port`."""
    try:
        pid = int(_pid_file(port).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    cmd = _cmdline(pid)
    # Guard against pid reuse: it must be java running kafka.Kafka with *this* port's config.
    props = str((_state_dir(port) / "server.properties").resolve())
    if not cmd or "java" not in cmd or "kafka.Kafka" not in cmd or props not in cmd:
        return None
    return pid


def _port_open(port: int, host: str = HOST) -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _port_lock(port: int) -> Iterator[None]:
    """Serialize `up`/`down` for one port across processes (e.g. pytest-xdist workers)."""
    # Beside the state folder, not in it, so `down(delete_data=True)` can remove that whole.
    lock_path = home() / f".broker-{port}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no locking
        yield
        return
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _read_end(path: Path, size: int = 256 * 1024) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _logs_excerpt(port: int, lines: int = 20) -> str:
    """The last lines of the broker's logs, plus earlier ERROR lines the tail would miss."""
    parts = []
    for path in (_broker_log(port), _stdout_log(port)):
        all_lines = _read_end(path).rstrip().splitlines()
        if not all_lines:
            continue
        tail = all_lines[-lines:]
        head = all_lines[:-lines]
        # Shutdown chatter after a fatal error can push the cause out of the tail.
        errors = ["\n".join(head[i : i + 2]) for i, line in enumerate(head) if "] ERROR " in line][
            :3
        ]
        if errors:
            parts.append(f"--- errors in {path} ---\n" + "\n".join(errors))
        parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
    return "\n".join(parts) or "(the broker wrote no log)"


def _stop_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # Kafka shuts down cleanly on SIGTERM.
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


# ----------------------------------------------------------------------------- public API


def up(
    port: int = 9092,
    *,
    timeout: float = 120.0,
    echo: Callable[[str], None] = print,
    sasl_port: int | None = None,
    sasl_users: Mapping[str, str] | None = None,
) -> str:
    """Start (if needed) a local broker on 127.0.0.1:`port`; return its bootstrap string.

    The controller listens on `port + 1`. Idempotent: returns at once if a broker answers.
    With `sasl_port` and `sasl_users` (name -> password), a SASL_PLAINTEXT listener with
    mechanism PLAIN also listens on `sasl_port`; the returned bootstrap stays the PLAINTEXT one.
    """
    _check_sasl(port, sasl_port, sasl_users)
    users = dict(sasl_users or {})
    bootstrap = bootstrap_for(port)
    if broker_ready(bootstrap):
        _check_running_sasl(port, sasl_port, users)
        echo(f"Kafka is already running at {bootstrap}")
        return bootstrap
    with _port_lock(port):
        pid = _our_broker_pid(port)
        if pid is None:
            # Re-check under the lock: another process may have started it meanwhile.
            if broker_ready(bootstrap):
                _check_running_sasl(port, sasl_port, users)
                echo(f"Kafka is already running at {bootstrap}")
                return bootstrap
            ports = [(port, "Kafka"), (port + 1, "the Kafka controller")]
            if sasl_port is not None:
                ports.append((sasl_port, "the Kafka SASL listener"))
            needs = ", ".join(str(p) for p, _ in ports[:-1]) + f" and {ports[-1][0]}"
            for p, role in ports:
                if _port_open(p):
                    raise BrokerError(
                        f"port {p} on {HOST} (for {role}) is in use by another program, not by "
                        f"a Kafka broker; stop it or choose another port (the broker needs "
                        f"{needs})"
                    )
            pid = _start(port, echo, sasl_port, users)
        else:
            _check_running_sasl(port, sasl_port, users)
            echo(f"A broker (pid {pid}) is already starting on {bootstrap}; waiting for it ...")
        _wait_ready(port, pid, timeout)
    echo(f"Kafka is up at {bootstrap} (logs: {_broker_log(port)})")
    return bootstrap


def _check_running_sasl(port: int, sasl_port: int | None, users: Mapping[str, str]) -> None:
    """With SASL asked for, the running broker must have been started with these settings."""
    if sasl_port is None:
        return  # an extra SASL listener does not hurt a PLAINTEXT user
    state = _state_dir(port)
    want = _server_properties(port, state / "data", sasl_port, users)
    try:
        have = (state / "server.properties").read_text(encoding="utf-8")
    except OSError:
        have = None
    if have != want:
        raise BrokerError(
            f"a Kafka broker already runs at {bootstrap_for(port)}, but not with a SASL listener "
            f"on {HOST}:{sasl_port} for these users; stop it first "
            f"(driftline kafka down --port {port})"
        )


def _start(
    port: int,
    echo: Callable[[str], None],
    sasl_port: int | None = None,
    sasl_users: Mapping[str, str] | None = None,
) -> int:
    java = _java()
    ensure_jars(echo)
    state = _state_dir(port)
    data = state / "data"
    data.mkdir(parents=True, exist_ok=True)
    # Rewritten each time so a newer driftline's settings apply to old data.
    _write_atomic(
        state / "server.properties",
        _server_properties(port, data, sasl_port, sasl_users),
        private=sasl_port is not None,
    )
    _write_atomic(state / "log4j2.properties", _log4j2_properties(_broker_log(port)))
    if not (data / "meta.properties").is_file():
        _format_storage(java, port, echo)
    cmd = _java_cmd(java, port, "kafka.Kafka", str((state / "server.properties").resolve()))
    sasl = f" (SASL/PLAIN on {bootstrap_for(sasl_port)})" if sasl_port is not None else ""
    echo(f"Starting Kafka {KAFKA_VERSION} on {bootstrap_for(port)}{sasl} ...")
    with _stdout_log(port).open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=state,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own session: the broker outlives this process and ignores its Ctrl-C.
            start_new_session=True,
            close_fds=True,
        )
    _write_atomic(_pid_file(port), f"{proc.pid}\n")
    return proc.pid


def _wait_ready(port: int, pid: int, timeout: float) -> None:
    bootstrap = bootstrap_for(port)
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            _pid_file(port).unlink(missing_ok=True)
            raise BrokerError(
                f"the Kafka broker (pid {pid}) exited during startup.\n{_logs_excerpt(port)}"
            )
        if broker_ready(bootstrap, timeout=2.0):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    # Do not leave a half-started JVM holding the ports.
    _stop_pid(pid, 15.0)
    _pid_file(port).unlink(missing_ok=True)
    raise BrokerError(
        f"the Kafka broker did not answer on {bootstrap} within {timeout:.0f} s; "
        f"it was stopped.\n{_logs_excerpt(port)}"
    )


def down(
    port: int = 9092,
    *,
    delete_data: bool = False,
    timeout: float = 30.0,
    echo: Callable[[str], None] = print,
) -> bool:
    """Stop the local broker on `port`; True if one was running.

    With `delete_data`, also remove its whole state folder (`<home>/broker-<port>`: data,
    config, logs), so the next `up` starts from an empty cluster.
    """
    state = _state_dir(port)
    if not state.exists():
        echo(f"No local Kafka broker on port {port}.")
        return False
    stopped = False
    with _port_lock(port):
        pid = _our_broker_pid(port)
        if pid is not None:
            echo(f"Stopping Kafka (pid {pid}) on {bootstrap_for(port)} ...")
            _stop_pid(pid, timeout)
            if _alive(pid):
                raise BrokerError(f"the Kafka broker (pid {pid}) did not exit")
            stopped = True
        else:
            echo(f"No local Kafka broker started by driftline runs on port {port}.")
            if _port_open(port):
                echo(f"(something else listens on {bootstrap_for(port)}; it was left alone)")
        _pid_file(port).unlink(missing_ok=True)
        if delete_data:
            shutil.rmtree(state)
            echo(f"Deleted {state}")
    return stopped


def status(port: int = 9092) -> str:
    """One line on the local broker for `port`."""
    bootstrap = bootstrap_for(port)
    pid = _our_broker_pid(port)
    ready = broker_ready(bootstrap)
    if pid is not None:
        state = "running" if ready else "starting (or unhealthy)"
        return f"{state}: local Kafka at {bootstrap}, pid {pid}, logs {_broker_log(port)}"
    if ready:
        return f"running: a Kafka broker not started by driftline answers at {bootstrap}"
    if _port_open(port):
        return f"port {port} is in use by something that is not a Kafka broker"
    return f"stopped: no Kafka at {bootstrap}"
