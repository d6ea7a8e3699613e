"""The predictions topic: one JSON message per event that was predicted, keyed like the event.

    {"id": ..., "partition": P, "offset": O, "prediction": <served label>,
     "proba": {label: p}, "model": "<member followed, or ensemble>", "time": <unix seconds>}

The prediction is the one made before the event was learned. Delivery is checked on `flush`, like
the dead letters': the service flushes before a checkpoint covers the events, so with the file
store the topic is at-least-once (a replay after a crash predicts those events again); with the
Kafka store the messages are part of the checkpoint's transaction, exactly once for a
read_committed consumer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import orjson

from consumers.deadletter import Sink
from consumers.errors import DeliveryFailed
from consumers.records import Record, where
from pipeline.ensemble import Prediction

log = logging.getLogger("driftline.predictions")

# Predictions sent between two sweeps of the acknowledged ones: what waits for the next flush
# is then the unacknowledged few, not every prediction of a checkpoint interval (some 10,000
# records and futures at 2,000 events/s, held until then for nothing).
SWEEP_EVERY = 2048


def encode_prediction(record: Record, event_id: str | None, prediction: Prediction,
                      now: float) -> bytes:
    """The JSON of one prediction (labels become JSON object keys in `proba`, so strings)."""
    # orjson: the JSON json.dumps writes (UTF-8 rather than \u escapes) at a fraction of its
    # cost. `default=float`: a model may give numpy floats, which orjson does not take as floats.
    return orjson.dumps({
        "id": event_id,
        "partition": record.partition,
        "offset": record.offset,
        "prediction": prediction.label,
        "proba": {str(label) if not isinstance(label, bool) else json.dumps(label): p
                  for label, p in prediction.proba.items()},
        "model": prediction.model,
        "time": round(now, 3),
    }, default=float)


class Predictions:
    """Produces one prediction per event to `topic` through `sink`; checks delivery on flush."""

    def __init__(self, sink: Sink, topic: str) -> None:
        self.sink = sink
        self.topic = topic
        self._pending: list[tuple[Record, Any]] = []
        self._sweep_at = SWEEP_EVERY

    def send(self, record: Record, event_id: str | None, prediction: Prediction) -> None:
        value = encode_prediction(record, event_id, prediction, time.time())
        future = self.sink.send(self.topic, value, key=getattr(record, "key", None))
        if future is not None:
            pending = self._pending
            pending.append((record, future))
            if len(pending) >= self._sweep_at:
                self._sweep()

    def _sweep(self) -> None:
        """Forget the predictions the broker has acknowledged; a failed one stays, for `flush`
        to report."""
        self._pending = [(r, f) for r, f in self._pending
                         if not getattr(f, "is_done", True) or f.failed()]
        self._sweep_at = len(self._pending) + SWEEP_EVERY

    def discard(self) -> None:
        """Forget the predictions not flushed yet (their transaction was aborted)."""
        self._pending = []
        self._sweep_at = SWEEP_EVERY

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every prediction sent so far; `DeliveryFailed` names the first lost one."""
        pending, self._pending = self._pending, []
        self._sweep_at = SWEEP_EVERY
        if not pending:
            return
        self.sink.flush(timeout)
        for record, future in pending:
            if not getattr(future, "is_done", True):
                raise DeliveryFailed(f"prediction of {where(record)} to {self.topic}: "
                                     "not acknowledged by the broker in time")
            if future.failed():
                error = future.exception
                raise DeliveryFailed(f"prediction of {where(record)} to {self.topic}: "
                                     f"{type(error).__name__}: {error}")
