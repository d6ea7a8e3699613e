"""Checkpoint files: atomic, signed, pruned, and refused before unpickling when not ours."""

from __future__ import annotations

import os
import pickle
import stat

import pytest

from consumers.deadletter import DeadLetters
from consumers.wire import encode
from driftline.checkpoint import (
    KEY_ENV,
    CheckpointError,
    CheckpointStore,
    State,
    load_key,
    sign,
    verify,
)
from driftline.checkpointing import Checkpointer
from driftline.config import ModelSpec, Settings
from driftline.datasets import bundled
from driftline.errors import ConfigError
from driftline.learning import build_learner
from driftline.metrics import CollectorRegistry, Metrics
from driftline.service import Service
from tests.memory import ListSink, ListSource

KEY = b"k" * 32


def fed_pipeline(n: int = 300):
    pipeline = build_learner(Settings())
    for x, y in bundled("elec", limit=n):
        pipeline.step(x, y)
    return pipeline


def test_save_then_load_gives_the_same_state(tmp_path):
    store = CheckpointStore(tmp_path, KEY)
    pipeline = fed_pipeline()
    store.save(State(pipeline, {0: 300, 1: 7}, "number", {"learned": 300}))
    state, path = store.load_latest()
    assert path.name == "checkpoint-000000000001.ckpt"
    assert state.offsets == {0: 300, 1: 7}
    assert state.label_kind == "number"
    assert state.pipeline.stats() == pipeline.stats()
    x, _ = next(iter(bundled("elec", limit=1)))
    assert state.pipeline.predict(x) == pipeline.predict(x)


def test_only_the_newest_keep_files_remain_and_numbering_continues(tmp_path):
    store = CheckpointStore(tmp_path, KEY, keep=2)
    for i in range(5):
        store.save(State(None, {0: i}))
    assert [p.name for p in store.files()] == [
        "checkpoint-000000000005.ckpt", "checkpoint-000000000004.ckpt"]
    assert not list(tmp_path.glob("*.tmp"))
    again = CheckpointStore(tmp_path, KEY, keep=2)
    again.save(State(None, {0: 99}))
    assert again.files()[0].name == "checkpoint-000000000006.ckpt"


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_newest_file_falls_back_to_the_one_before(tmp_path, damage, caplog):
    store = CheckpointStore(tmp_path, KEY)
    store.save(State(None, {0: 10}))
    newest = store.save(State(None, {0: 20}))
    blob = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(blob[:-5])
    elif damage == "flip":
        newest.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    else:
        newest.write_bytes(b"")
    state, path = store.load_latest()
    assert state.offsets == {0: 10}
    assert path.name == "checkpoint-000000000001.ckpt"
    assert "falling back" in caplog.text


class Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("key", [None, b"someone else's key"])
def test_a_checkpoint_not_signed_with_our_key_is_never_unpickled(tmp_path, key):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Evil(str(marker)))
    blob = payload if key is None else sign(key, payload)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "checkpoint-000000000001.ckpt").write_bytes(blob)
    with pytest.raises(CheckpointError, match=r"not a driftline checkpoint|does not verify"):
        verify(KEY, blob)
    assert CheckpointStore(tmp_path / "state", KEY).load_latest() is None
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes, unpickled, would have created the file
    assert marker.exists()


def test_the_key_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = load_key(tmp_path)
    path = tmp_path / "checkpoint.key"
    assert path.read_bytes().strip() == key and len(key) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(tmp_path) == key  # the same key on the next start
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert load_key(tmp_path) == b"from-env"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=r"checkpoint\.key_file"):
        load_key(tmp_path, str(tmp_path / "missing.key"))


def make_service(store, settings=None):
    settings = settings or Settings()
    dead_letters = DeadLetters(ListSink(), "events.dlq")
    return Service(build_learner(settings), dead_letters, Metrics(CollectorRegistry()),
                   checkpointer=Checkpointer(store, dead_letters))


def test_a_service_restores_what_another_checkpointed(tmp_path):
    values = [encode(x, y) for x, y in bundled("elec", limit=400)]
    store = CheckpointStore(tmp_path, KEY)
    first = make_service(store)
    first.process(ListSource("events", values).poll())
    first.checkpoint()
    second = make_service(store)
    assert second.restore()
    assert second.checkpointer.offsets == {0: 400}
    assert second.pipeline.stats() == first.pipeline.stats()
    assert second.decoder.label_kind == "number"
    assert second.metrics.registry.get_sample_value(
        "driftline_checkpoint_restored_offset", {"partition": "0"}) == 400


def test_restoring_into_other_models_stops_with_a_config_error(tmp_path):
    store = CheckpointStore(tmp_path, KEY)
    first = make_service(store)
    first.process(ListSource("events", [encode({"a": 1.0}, 1)]).poll())
    first.checkpoint()
    other = Settings(models=(ModelSpec("nb", "gaussian_nb"),))
    with pytest.raises(ConfigError, match="models"):
        make_service(store, other).restore()
