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
    MAGIC_V1,
    Binding,
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
    assert state.label_kind is None  # accepted for compatibility, no longer checkpointed
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
    store = CheckpointStore(tmp_path / "state", KEY)
    if key is None:  # not a checkpoint at all: nothing to restore
        assert store.load_latest() is None
    else:  # a signed checkpoint no key of ours verifies: refuse to start
        with pytest.raises(ConfigError, match="none verifies with the key in use"):
            store.load_latest()
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


# --- issue 11: no mistake may wipe the state ------------------------------------------------


def saved(directory, key=KEY, n=2, binding=None, keep=3):
    store = CheckpointStore(directory, key, keep, binding=binding)
    for i in range(n):
        store.save(State(None, {0: 10 * (i + 1)}))
    return store


def test_a_forgotten_key_refuses_to_start_and_creates_no_key(tmp_path, monkeypatch):
    """Checkpoints signed with $DRIFTLINE_CHECKPOINT_KEY; the next start forgets the variable."""
    monkeypatch.setenv(KEY_ENV, "the real key")
    saved(tmp_path, load_key(tmp_path))
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=r"checkpoint\.dir: .* holds checkpoints but"):
        load_key(tmp_path)
    assert not (tmp_path / "checkpoint.key").exists()  # never a new key beside checkpoints


def test_a_lost_key_file_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    saved(tmp_path, load_key(tmp_path))
    (tmp_path / "checkpoint.key").unlink()
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_key(tmp_path)
    assert not (tmp_path / "checkpoint.key").exists()


def test_a_wrong_key_refuses_to_start_and_prunes_nothing(tmp_path):
    saved(tmp_path, KEY, n=3)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError) as info:
        CheckpointStore(tmp_path, b"another key").load_latest()
    assert "checkpoint.dir" in str(info.value) and str(tmp_path) in str(info.value)
    assert "none verifies with the key in use" in str(info.value)
    # even a store that writes with the wrong key never deletes what it cannot verify
    wrong = CheckpointStore(tmp_path, b"another key", keep=1)
    for i in range(3):
        wrong.save(State(None, {0: i}))
    after = sorted(p.name for p in tmp_path.iterdir())
    assert set(before) <= set(after)
    assert CheckpointStore(tmp_path, KEY).load_latest()[0].offsets == {0: 30}


def test_pruning_keeps_the_newest_verified_and_never_touches_others(tmp_path):
    foreign = tmp_path / "checkpoint-000000000001.ckpt"
    foreign.write_bytes(sign(b"other", b"x"))
    store = CheckpointStore(tmp_path, KEY, keep=2)
    for i in range(4):
        store.save(State(None, {0: i}))
    assert [p.name for p in store.files()] == [
        "checkpoint-000000000005.ckpt", "checkpoint-000000000004.ckpt", foreign.name]


def test_after_a_restart_older_verified_files_are_still_pruned(tmp_path):
    saved(tmp_path, n=3)
    store = CheckpointStore(tmp_path, KEY, keep=3)
    store.load_latest()
    store.save(State(None, {0: 99}))
    assert [_ for _ in (p.name for p in store.files())] == [
        "checkpoint-000000000004.ckpt", "checkpoint-000000000003.ckpt",
        "checkpoint-000000000002.ckpt"]


def test_checkpoints_are_bound_to_their_topic_and_group(tmp_path):
    saved(tmp_path, binding=Binding("events", "g1"))
    state, _ = CheckpointStore(tmp_path, KEY, binding=Binding("events", "g1")).load_latest()
    assert state.offsets == {0: 20}
    with pytest.raises(ConfigError, match=r"topic 'events'.*kafka\.topic is 'clicks'"):
        CheckpointStore(tmp_path, KEY, binding=Binding("clicks", "g1")).load_latest()
    with pytest.raises(ConfigError, match=r"group 'g1'.*kafka\.group_id 'g2'"):
        CheckpointStore(tmp_path, KEY, binding=Binding("events", "g2")).load_latest()


def test_an_older_checkpoint_renamed_to_a_newer_number_is_refused(tmp_path, caplog):
    saved(tmp_path, n=2)
    old = tmp_path / "checkpoint-000000000001.ckpt"
    old.rename(tmp_path / "checkpoint-000000000007.ckpt")
    state, path = CheckpointStore(tmp_path, KEY).load_latest()
    assert path.name == "checkpoint-000000000002.ckpt" and state.offsets == {0: 20}
    assert "renamed" in caplog.text


def test_files_are_private_even_under_a_permissive_umask(tmp_path):
    leftover = tmp_path / "checkpoint-000000000001.tmp"
    leftover.write_bytes(b"half")
    leftover.chmod(0o644)
    old = os.umask(0)
    try:
        path = CheckpointStore(tmp_path, KEY).save(State(None, {0: 1}))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not leftover.exists()  # it was the temporary file, renamed


def _boom():
    raise ValueError("a class that changed since")


class Boom:
    def __reduce__(self):
        return (_boom, ())


@pytest.mark.parametrize("exc_state", [Boom(), "not a state"])
def test_a_verified_checkpoint_that_cannot_be_unpickled_falls_back(tmp_path, exc_state, caplog):
    store = saved(tmp_path, n=1)
    if isinstance(exc_state, Boom):
        store.save(State(exc_state, {0: 99}))
    else:  # signed by us, but not a State
        blob = sign(KEY, store._header(2) + pickle.dumps(exc_state))
        (tmp_path / "checkpoint-000000000002.ckpt").write_bytes(blob)
    state, path = CheckpointStore(tmp_path, KEY).load_latest()
    assert state.offsets == {0: 10} and path.name.endswith("01.ckpt")
    assert "falling back" in caplog.text


def test_signed_checkpoints_none_of_which_loads_refuse_to_start(tmp_path):
    CheckpointStore(tmp_path, KEY).save(State(Boom(), {0: 1}))
    with pytest.raises(ConfigError, match="none can be restored"):
        CheckpointStore(tmp_path, KEY).load_latest()


def test_a_legacy_checkpoint_loads_until_a_new_one_exists(tmp_path, caplog):
    legacy = sign(KEY, pickle.dumps(State(None, {0: 5})), MAGIC_V1)
    (tmp_path / "checkpoint-000000000003.ckpt").write_bytes(legacy)
    store = CheckpointStore(tmp_path, KEY, binding=Binding("events", "g"))
    assert store.load_latest()[0].offsets == {0: 5}
    store.save(State(None, {0: 6}))
    (tmp_path / "checkpoint-000000000009.ckpt").write_bytes(legacy)  # an old one, renamed
    state, path = CheckpointStore(tmp_path, KEY).load_latest()
    assert state.offsets == {0: 6} and path.name.endswith("04.ckpt")


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_a_checkpoint_dir_that_cannot_be_a_folder_is_a_config_error(tmp_path, where, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    directory = blocker if where == "file" else blocker / "state"
    with pytest.raises(ConfigError, match=r"^checkpoint\.dir: "):
        CheckpointStore(directory, KEY)
    with pytest.raises(ConfigError, match=r"^checkpoint\.dir: "):
        load_key(directory)
