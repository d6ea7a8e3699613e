"""Signed, atomic checkpoints of the service state together with the next offset of each partition.

A checkpoint file is ``MAGIC | HMAC-SHA256(key, payload) | payload`` where the payload is a pickle
of `State`. The signature is checked before anything is unpickled, because unpickling untrusted
bytes runs code. Files are written to a temporary name, fsynced and renamed, so a crash leaves
either the old file or the new one, never half of one; the newest `keep` files are kept, and a
torn or corrupt newest file falls back to the one before.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline.errors import ConfigError, DriftlineError

log = logging.getLogger("driftline.checkpoint")

MAGIC = b"DRIFTLINE-CKPT-1\n"
KEY_ENV = "DRIFTLINE_CHECKPOINT_KEY"
_NAME = re.compile(r"^checkpoint-(\d{12})\.ckpt$")
_DIGEST = hashlib.sha256().digest_size


class CheckpointError(DriftlineError):
    """A checkpoint file that is torn, altered or unsigned; it is never unpickled."""


@dataclass
class State:
    """Everything a restart needs to carry on exactly where the checkpoint was taken."""

    pipeline: Any
    offsets: dict[int, int]  # partition -> next offset to read
    label_kind: str | None = None  # the stream's label type, fixed by its first label
    outcomes: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    # Dead letters by reason. A plain default (not a factory) is a class attribute, so a
    # checkpoint written before this field existed still loads, with None.
    dead_letters: dict[str, int] | None = None


def load_key(directory: Path, key_file: str = "") -> bytes:
    """The HMAC key: $DRIFTLINE_CHECKPOINT_KEY, else `key_file`, else `<dir>/checkpoint.key`,
    created with a random key (mode 0600) the first time."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = Path(key_file) if key_file else directory / "checkpoint.key"
    if key_file and not path.is_file():
        raise ConfigError(f"checkpoint.key_file: no such file: {path}")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    key = path.read_bytes().strip()
    if not key:
        raise ConfigError(f"checkpoint.key_file: {path} is empty")
    return key


def sign(key: bytes, payload: bytes) -> bytes:
    return MAGIC + hmac.new(key, payload, hashlib.sha256).digest() + payload


def verify(key: bytes, blob: bytes, name: str = "checkpoint") -> bytes:
    """The payload of a signed blob; raises `CheckpointError` unless the signature verifies."""
    head = len(MAGIC) + _DIGEST
    if len(blob) < head or not blob.startswith(MAGIC):
        raise CheckpointError(f"{name}: not a driftline checkpoint (no signature header)")
    digest, payload = blob[len(MAGIC) : head], blob[head:]
    if not hmac.compare_digest(digest, hmac.new(key, payload, hashlib.sha256).digest()):
        raise CheckpointError(
            f"{name}: signature does not verify (torn, altered, or signed with another key); "
            "refused without unpickling"
        )
    return payload


class CheckpointStore:
    """The checkpoint files of one service in one folder."""

    def __init__(self, directory: str | Path, key: bytes, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.keep = keep
        files = self.files()
        self._seq = int(_NAME.match(files[0].name).group(1)) if files else 0  # type: ignore[union-attr]

    def files(self) -> list[Path]:
        """Checkpoint files, newest first."""
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def save(self, state: State) -> Path:
        """Write `state` atomically as the newest checkpoint; prune old ones."""
        blob = sign(self.key, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        self._seq += 1
        path = self.directory / f"checkpoint-{self._seq:012d}.ckpt"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:  # make the rename itself durable
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        for old in self.files()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[State, Path] | None:
        """The newest checkpoint whose signature verifies, falling back past bad ones."""
        for path in self.files():
            try:
                payload = verify(self.key, path.read_bytes(), str(path))
                state = pickle.loads(payload)
            except CheckpointError as exc:
                log.error("%s; falling back to the checkpoint before it", exc)
                continue
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError,
                    ImportError) as exc:
                log.error("%s: cannot be loaded (%s); falling back to the one before", path, exc)
                continue
            if not isinstance(state, State):
                log.error("%s: holds no driftline state; falling back to the one before", path)
                continue
            return state, path
        return None
