"""Signed, atomic checkpoints of the service state together with the next offset of each partition.

A checkpoint file is ``MAGIC | HMAC-SHA256(key, payload) | payload``. The payload is a small JSON
header (format version, the checkpoint's sequence number, the topic and the consumer group it
checkpoints) followed by a pickle of `State`; the signature covers both, and is checked before
anything is unpickled, because unpickling untrusted bytes runs code.

Files are written (mode 0600) to a temporary name, fsynced and renamed, so a crash leaves either
the old file or the new one, never half of one. Restoring falls back past a newest file that is
torn, altered, renamed (its signed sequence number is not the one in its name) or that cannot be
unpickled. It refuses to start (`ConfigError`) when the folder holds signed checkpoints but none
can be restored (the key in use verifies none of them, say: a forgotten
$DRIFTLINE_CHECKPOINT_KEY), and when the newest one checkpoints another topic or consumer group:
starting from scratch there would silently lose the state. Only files that verify are ever
pruned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline.errors import ConfigError, DriftlineError

log = logging.getLogger("driftline.checkpoint")

MAGIC_V1 = b"DRIFTLINE-CKPT-1\n"  # payload: the pickle alone (read, never written)
MAGIC = b"DRIFTLINE-CKPT-2\n"  # payload: u32 header length | JSON header | pickle
FORMAT_VERSION = 2
KEY_ENV = "DRIFTLINE_CHECKPOINT_KEY"
_NAME = re.compile(r"^checkpoint-(\d{12})\.ckpt$")
_DIGEST = hashlib.sha256().digest_size
_HEAD = struct.Struct(">I")


class CheckpointError(DriftlineError):
    """A checkpoint file that is torn, altered or unsigned; it is never unpickled."""


@dataclass(frozen=True)
class Binding:
    """What a checkpoint is the state of: signed into every file, checked on restore."""

    topic: str
    group_id: str


@dataclass
class State:
    """Everything a restart needs to carry on exactly where the checkpoint was taken."""

    pipeline: Any
    offsets: dict[int, int]  # partition -> next offset to read
    # Deprecated: labels are no longer typed by the first one. Accepted (and ignored) so that
    # older callers and older checkpoints still load; always saved as None.
    label_kind: str | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    # Dead letters by reason. A plain default (not a factory) is a class attribute, so a
    # checkpoint written before this field existed still loads, with None.
    dead_letters: dict[str, int] | None = None
    # The events waiting for a delayed label (`pipeline.pending.PendingLabels`); None in a
    # checkpoint written before delayed labels.
    pending: Any = None
    # model -> predictions checked against a label, and the right ones (None: older checkpoint)
    predictions: dict[str, int] | None = None
    predictions_correct: dict[str, int] | None = None


def dumps(state: State) -> bytes:
    """The pickle of a state, as a checkpoint holds it."""
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def _sequence(path: Path) -> int:
    match = _NAME.match(path.name)
    assert match is not None
    return int(match.group(1))


def _has_checkpoints(directory: Path) -> bool:
    try:
        return any(_NAME.match(p.name) for p in directory.iterdir())
    except OSError:
        return False


def ensure_directory(directory: Path) -> None:
    """Create `directory` (mode 0700) if need be; `ConfigError` naming checkpoint.dir when it is
    a file, cannot be created or cannot be written."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"checkpoint.dir: {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"checkpoint.dir: cannot create {directory}: {exc.strerror or exc}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"checkpoint.dir: {directory} is not writable")


def load_key(directory: Path, key_file: str = "") -> bytes:
    """The HMAC key: $DRIFTLINE_CHECKPOINT_KEY, else `key_file`, else `<dir>/checkpoint.key`,
    created with a random key (mode 0600) the first time, and only while the folder holds no
    checkpoint: a new key beside existing checkpoints would verify none of them."""
    directory = Path(directory)
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = Path(key_file) if key_file else directory / "checkpoint.key"
    if key_file and not path.is_file():
        raise ConfigError(f"checkpoint.key_file: no such file: {path}")
    if not path.exists():
        ensure_directory(directory)
        if _has_checkpoints(directory):
            raise ConfigError(
                f"checkpoint.dir: {directory} holds checkpoints but their key file {path} is "
                f"missing; restore it (or set ${KEY_ENV} to the key they were signed with). "
                "A new key would verify none of them, so none is made"
            )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another instance sharing the folder made it first
            for _ in range(20):  # and may still be writing it
                if path.stat().st_size:
                    break
                time.sleep(0.05)
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        where = "checkpoint.key_file" if key_file else "checkpoint.dir"
        raise ConfigError(f"{where}: cannot read the key {path}: {exc.strerror or exc}") from None
    if not key:
        raise ConfigError(f"checkpoint.key_file: {path} is empty")
    return key


def sign(key: bytes, payload: bytes, magic: bytes = MAGIC) -> bytes:
    return magic + hmac.new(key, payload, hashlib.sha256).digest() + payload


def _open(key: bytes, blob: bytes, name: str) -> tuple[int, bytes]:
    """(format version, payload) of a signed blob; `CheckpointError` unless it verifies."""
    if blob.startswith(MAGIC):
        version = FORMAT_VERSION
    elif blob.startswith(MAGIC_V1):
        version = 1
    else:
        raise CheckpointError(f"{name}: not a driftline checkpoint (no signature header)")
    head = len(MAGIC) + _DIGEST  # both magics have the same length
    if len(blob) < head:
        raise CheckpointError(f"{name}: torn (shorter than its signature header)")
    digest, payload = blob[len(MAGIC) : head], blob[head:]
    if not hmac.compare_digest(digest, hmac.new(key, payload, hashlib.sha256).digest()):
        raise CheckpointError(
            f"{name}: signature does not verify (torn, altered, or signed with another key); "
            "refused without unpickling"
        )
    return version, payload


def verify(key: bytes, blob: bytes, name: str = "checkpoint") -> bytes:
    """The payload of a signed blob; raises `CheckpointError` unless the signature verifies."""
    return _open(key, blob, name)[1]


def _split(payload: bytes, name: str) -> tuple[dict[str, Any], bytes]:
    """The header and the pickle of a verified format-2 payload."""
    try:
        (size,) = _HEAD.unpack_from(payload)
        header = json.loads(payload[_HEAD.size : _HEAD.size + size])
        if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
            raise ValueError("unknown header")
    except (struct.error, ValueError) as exc:
        raise CheckpointError(f"{name}: unreadable header ({exc})") from None
    return header, payload[_HEAD.size + size :]


class CheckpointStore:
    """The checkpoint files of one service in one folder.

    With a `binding`, every file is signed with its topic and consumer group, and restoring a
    checkpoint of another topic or group raises `ConfigError`.
    """

    def __init__(
        self,
        directory: str | Path,
        key: bytes,
        keep: int = 3,
        *,
        binding: Binding | None = None,
    ) -> None:
        self.directory = Path(directory)
        ensure_directory(self.directory)
        self.key = key
        self.keep = keep
        self.binding = binding
        self._verified: set[str] = set()  # names of files known to verify with our key
        self._unverifiable: set[str] = set()  # names that did not: never pruned, warned once
        files = self.files()
        self._seq = _sequence(files[0]) if files else 0

    def files(self) -> list[Path]:
        """Checkpoint files, newest first."""
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def _header(self, seq: int) -> bytes:
        header = {
            "format": FORMAT_VERSION,
            "seq": seq,
            "topic": self.binding.topic if self.binding else None,
            "group_id": self.binding.group_id if self.binding else None,
            "created": time.time(),
        }
        data = json.dumps(header, separators=(",", ":")).encode()
        return _HEAD.pack(len(data)) + data

    def save(self, state: State, body: bytes | None = None) -> Path:
        """Write `state` atomically as the newest checkpoint; prune old verified ones. `body`:
        the state already pickled (with `dumps`), if the caller has it."""
        if state.label_kind is not None:  # no longer part of a checkpoint
            state = dataclasses.replace(state, label_kind=None)
            body = None
        self._seq += 1
        if body is None:
            body = dumps(state)
        blob = sign(self.key, self._header(self._seq) + body)
        path = self.directory / f"checkpoint-{self._seq:012d}.ckpt"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # a leftover temporary file keeps its old mode
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:  # make the rename itself durable
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._verified.add(path.name)
        self._prune()
        return path

    def _verifies(self, path: Path) -> bool:
        """Whether `path` carries our signature (read once; the answer is remembered)."""
        if path.name in self._verified:
            return True
        if path.name in self._unverifiable:
            return False
        try:
            _open(self.key, path.read_bytes(), str(path))
        except (CheckpointError, OSError) as exc:
            self._unverifiable.add(path.name)
            log.warning("%s; it is left in place (never pruned)", exc)
            return False
        self._verified.add(path.name)
        return True

    def _prune(self) -> None:
        """Delete verified files beyond the newest `keep` verified ones; never another file."""
        kept = 0
        for path in self.files():
            if not self._verifies(path):
                continue
            kept += 1
            if kept > self.keep:
                path.unlink(missing_ok=True)
                self._verified.discard(path.name)

    def load_latest(self) -> tuple[State, Path] | None:
        """The newest checkpoint that verifies and loads, falling back past bad ones; None for a
        folder without any signed checkpoint.

        Raises `ConfigError` when the newest loadable checkpoint is bound to another topic or
        consumer group, and when signed checkpoints exist but none can be restored.
        """
        files = self.files()
        # Once a format-2 file exists, legacy files (which cannot be checked for a rename) are
        # not trusted any more.
        newer_format = any(self._magic(path) == MAGIC for path in files)
        signed: list[str] = []  # files with a signature header, whatever became of them
        problems: list[str] = []
        for path in files:
            try:
                blob = path.read_bytes()
            except OSError as exc:
                log.error("%s: cannot be read (%s); falling back to the one before", path, exc)
                problems.append(f"{path.name}: unreadable")
                continue
            if blob.startswith((MAGIC, MAGIC_V1)):
                signed.append(path.name)
            try:
                version, payload = _open(self.key, blob, str(path))
            except CheckpointError as exc:
                self._unverifiable.add(path.name)
                log.error("%s; falling back to the checkpoint before it", exc)
                problems.append(f"{path.name}: does not verify")
                continue
            self._verified.add(path.name)
            if version == FORMAT_VERSION:
                try:
                    header, body = _split(payload, str(path))
                except CheckpointError as exc:
                    log.error("%s; falling back to the one before", exc)
                    problems.append(f"{path.name}: unreadable header")
                    continue
                if header.get("seq") != _sequence(path):
                    log.error(
                        "%s: signed as checkpoint %s, not %d (renamed?); refused, falling back "
                        "to the one before", path, header.get("seq"), _sequence(path),
                    )
                    problems.append(f"{path.name}: renamed")
                    continue
                self._check_binding(header, path)
            elif newer_format:
                log.error("%s: a legacy checkpoint beside newer-format ones (renamed?); "
                          "refused, falling back to the one before", path)
                problems.append(f"{path.name}: legacy")
                continue
            else:
                log.warning("%s: legacy checkpoint format (no topic or group to check); loaded "
                            "once, the next checkpoint is written in the new format", path)
                body = payload
            try:
                state = pickle.loads(body)
            except Exception as exc:  # anything at all: a class renamed, a library changed...
                log.error("%s: cannot be loaded (%s: %s); falling back to the one before",
                          path, type(exc).__name__, exc)
                problems.append(f"{path.name}: cannot be unpickled ({type(exc).__name__})")
                continue
            if not isinstance(state, State):
                log.error("%s: holds no driftline state; falling back to the one before", path)
                problems.append(f"{path.name}: not a driftline state")
                continue
            return state, path
        if not signed:
            return None
        if not self._verified:
            raise ConfigError(
                f"checkpoint.dir: {self.directory} holds {len(signed)} signed checkpoint(s) but "
                f"none verifies with the key in use (${KEY_ENV}, checkpoint.key_file or "
                f"{self.directory / 'checkpoint.key'}), or all are damaged; start with the key "
                "they were signed with, or move them away to start from scratch"
            )
        raise ConfigError(
            f"checkpoint.dir: {self.directory} holds signed checkpoints but none can be restored "
            f"({'; '.join(problems[:5])}); fix the cause, or move them away to start from scratch"
        )

    @staticmethod
    def _magic(path: Path) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read(len(MAGIC))
        except OSError:
            return b""

    def _check_binding(self, header: dict[str, Any], path: Path) -> None:
        if self.binding is None or header.get("topic") is None:
            return
        saved = (header.get("topic"), header.get("group_id"))
        wanted = (self.binding.topic, self.binding.group_id)
        if saved != wanted:
            raise ConfigError(
                f"checkpoint.dir: {path} is the state of topic {saved[0]!r} read as group "
                f"{saved[1]!r}, but kafka.topic is {wanted[0]!r} and kafka.group_id "
                f"{wanted[1]!r}; restore those settings or use another checkpoint.dir"
            )
