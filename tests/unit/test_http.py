"""The metrics port: Prometheus text, the self-contained page, the stats API, errors."""

import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from driftline.errors import ConfigError
from driftline.http import StatusServer
from driftline.metrics import CONTENT_TYPE_LATEST, CollectorRegistry, Metrics

STATUS = {"uptime_seconds": 1.5, "events": {"learned": 3}, "models": {"m": {"accuracy": 0.5}}}


@pytest.fixture(scope="module")
def server():
    metrics = Metrics(CollectorRegistry())
    metrics.publish(replace(metrics.latest, outcomes={**metrics.latest.outcomes, "learned": 3},
                            dead_letters={**metrics.latest.dead_letters, "not_json": 1}))
    srv = StatusServer("127.0.0.1", 0, metrics, lambda: STATUS)
    srv.start()
    yield srv
    srv.stop()


def get(server, path):
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_metrics(server):
    status, ctype, body = get(server, "/metrics")
    assert status == 200
    assert ctype == CONTENT_TYPE_LATEST
    text = body.decode()
    assert 'driftline_events_total{outcome="learned"} 3.0' in text
    assert 'driftline_dead_letters_total{reason="not_json"} 1.0' in text


def test_page_has_no_external_references(server):
    status, ctype, body = get(server, "/")
    assert status == 200
    assert ctype.startswith("text/html")
    page = body.decode()
    assert "<html" in page
    assert not re.search(r"https?://", page, re.IGNORECASE)
    # every src/href/fetch/url() target is a relative or same-origin path
    targets = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)|fetch\(\s*["']([^"']+)""", page)
    targets += [(t, "") for t in re.findall(r"url\(\s*['\"]?([^'\")]+)", page)]
    assert targets
    for target in (a or b for a, b in targets):
        assert not target.startswith("//"), target
        assert ":" not in target.split("/")[0], target  # no scheme
    assert get(server, "/index.html")[2] == body


def test_api_stats(server):
    status, ctype, body = get(server, "/api/stats?x=1")
    assert status == 200
    assert ctype == "application/json"
    assert json.loads(body) == STATUS


def test_healthz(server):
    assert get(server, "/healthz")[0] == 200


def test_unknown_path(server):
    assert get(server, "/nope")[0] == 404


def test_port_in_use(server):
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        StatusServer("127.0.0.1", server.port, Metrics(CollectorRegistry()), dict)


def test_readyz_follows_the_ready_callable():
    state = {"ready": False}
    server = StatusServer("127.0.0.1", 0, Metrics(CollectorRegistry()), dict,
                          ready=lambda: state["ready"])
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/readyz"
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(url, timeout=5)
        assert excinfo.value.code == 503
        state["ready"] = True
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
    finally:
        server.stop()


def test_history_keeps_recent_samples_drops_empty_ones_and_filters_by_time():
    from driftline.http import History

    statuses = iter([{}, {"v": 1.0}, {"v": float("nan")}, {"v": 3.0}])
    history = History(lambda: next(statuses), interval=1.0, seconds=2.0)
    for _ in range(4):
        history.sample()
    samples = history.since()
    assert [s["v"] for s in samples] == [None, 3.0]  # the empty status skipped, NaN as null
    assert len(samples) == 2  # and only seconds / interval samples kept
    assert history.since(samples[0]["t"] - 1) == samples
    assert history.since(samples[-1]["t"]) == []  # strictly after


def test_api_history_answers_json_and_rejects_a_bad_since():
    server = StatusServer("127.0.0.1", 0, Metrics(CollectorRegistry()), lambda: {"events": {}},
                          history_interval=0.05)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}/api/history"
        wait = 0
        while wait < 50:
            with urllib.request.urlopen(base, timeout=5) as response:
                body = json.loads(response.read())
            if body["samples"]:
                break
            wait += 1
            threading.Event().wait(0.05)
        assert body["samples"] and body["samples"][0]["events"] == {}
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(base + "?since=yesterday", timeout=5)
        assert excinfo.value.code == 400
    finally:
        server.stop()


# --- issue 11: idle connections cannot exhaust threads or descriptors -----------------------


def _closed_by_server(sock, within):
    """True when the server closes `sock` within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_idle_connections_time_out_and_do_not_keep_a_request_out():
    import socket
    import time

    server = StatusServer("127.0.0.1", 0, Metrics(CollectorRegistry()), dict, idle_timeout=1.0)
    server.start()
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        started = time.monotonic()
        assert get(server, "/healthz")[0] == 200  # answered at once, 200 idle sockets or not
        assert time.monotonic() - started < 1.0
        assert server._server.open_connections() <= 64
        assert threading.active_count() < 100
        assert all(_closed_by_server(s, within=4.0) for s in idle)  # the timeout closed them
        deadline = time.monotonic() + 2
        while server._server.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server._server.open_connections() == 0
        assert get(server, "/metrics")[0] == 200
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_beyond_the_cap_of_busy_connections_new_ones_are_closed_at_once():
    import socket

    release = threading.Event()

    def slow_status():
        release.wait(10)
        return {"events": {}}

    server = StatusServer("127.0.0.1", 0, Metrics(CollectorRegistry()), slow_status,
                          max_connections=2, history_interval=3600)
    server.start()
    results = []
    busy = [threading.Thread(target=lambda: results.append(get(server, "/api/stats")[0]))
            for _ in range(2)]
    try:
        for t in busy:
            t.start()
        deadline = threading.Event()
        for _ in range(100):  # both requests are in and being served
            if server._server.open_connections() == 2 and not server._server._waiting:
                break
            deadline.wait(0.05)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert _closed_by_server(extra, within=2.0)
        extra.close()
        release.set()
        for t in busy:
            t.join(10)
        assert results == [200, 200]
        assert get(server, "/healthz")[0] == 200  # slots are free again
    finally:
        release.set()
        server.stop()


def test_a_full_history_of_the_default_status_stays_small():
    """The history fills over its first `HISTORY_SECONDS` whatever the rate: kept as the
    status dicts themselves (some 9 kB each with the default model set), a full buffer added
    8.5 MiB to a long run's memory. Kept compact, a full one must stay under 3 MiB."""
    import tracemalloc

    from consumers.deadletter import DeadLetters
    from consumers.records import Record
    from consumers.wire import encode
    from driftline.config import Settings
    from driftline.datasets import bundled
    from driftline.http import HISTORY_INTERVAL, HISTORY_SECONDS, History
    from driftline.learning import build_learner
    from driftline.service import Service
    from tests.memory import ListSink

    metrics = Metrics(CollectorRegistry())
    service = Service(build_learner(Settings()), DeadLetters(ListSink(), "d"), metrics)
    records = [Record("t", 0, i, encode(x, y), 1) for i, (x, y)
               in enumerate(bundled("elec", limit=3000))]
    service.process(records)
    history = History(lambda: metrics.latest.status(time.time()), HISTORY_INTERVAL,
                      HISTORY_SECONDS)
    full = round(HISTORY_SECONDS / HISTORY_INTERVAL)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(full):
            history.sample()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(history.since()) == full
    assert history.since()[-1]["events"]["learned"] == 3000  # what the dashboard reads back
    assert kept < 3 * 2**20, f"{kept / 2**20:.1f} MiB for {full} samples"
