"""The dashboard page in a real headless browser (Debian's chromium, driven through its
chromedriver): it loads with no console error, and once Elec2 events flow its charts show the
accuracy of every configured model. Screenshots go to test-artifacts/ (laptop, wall-screen and
phone sizes; the page must not be wider than any of them).

`DRIFTLINE_DASHBOARD_EVENTS` and `DRIFTLINE_DASHBOARD_RATE` change how many events are
published and how fast (default 3000 at 300 events/s), e.g. for a longer run whose screenshot
goes into the README.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Service, free_port, sample, wait_for, write_config

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
EVENTS = int(os.environ.get("DRIFTLINE_DASHBOARD_EVENTS") or 3000)
RATE = os.environ.get("DRIFTLINE_DASHBOARD_RATE") or "300"
MEMBERS = ["logistic_regression", "hoeffding_adaptive_tree", "no_change"]
MODELS = "".join(f'[[models]]\nname = "{name}"\nmodel = "{name}"\n\n' for name in MEMBERS)
SIZES = {"laptop": (1440, 900), "wall": (2560, 1440), "phone": (390, 844)}
# Headless, and nothing that would reach out to the internet on its own.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail("Debian's chromium and chromium-driver are needed (make system-deps "
                    "installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        pytest.fail("selenium is not installed (it is in the dev extra: make install)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size={},{}".format(*SIZES["laptop"])]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # With the driver's path given, selenium does not look for (or download) a driver itself.
    service = DriverService(executable_path=chromedriver,
                            log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """Every console message of the page so far; errors (and uncaught exceptions) fail."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.entries: list[dict[str, Any]] = []

    def errors(self) -> list[str]:
        self.entries += self.driver.get_log("browser")
        return [e["message"] for e in self.entries if e["level"] == "SEVERE"]


def legend(driver: Any, chart: str) -> dict[str, float | None]:
    """The models in a chart's legend and the value each shows now (None: no value yet)."""
    items = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' .legend li')]"
        ".map(li => [li.dataset.model, li.dataset.value])", f"#{chart}")
    return {name: (float(value) if value else None) for name, value in items}


def points(driver: Any, chart: str) -> int:
    return int(driver.execute_script(
        "return document.getElementById(arguments[0]).dataset.points || '0'", chart))


def screenshot(driver: Any, name: str, width: int, height: int) -> Path:
    """The whole page at a viewport of `width` x `height` CSS pixels, as test-artifacts/NAME."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(1.5)  # a redraw at the new size (ResizeObserver) and a fresh poll
    full = int(driver.execute_script("return document.documentElement.scrollHeight"))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": max(full, height), "scale": 1}})
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def test_dashboard_shows_every_model_live(browser, kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    port = free_port()
    config = write_config(tmp_path / "driftline.toml", kafka_bootstrap, topic, port,
                          models=MODELS)
    url = f"http://127.0.0.1:{port}/"
    console = Console(browser)
    publisher: subprocess.Popen[bytes] | None = None
    with Service(config, tmp_path / "serve.log") as service:
        try:
            wait_for(lambda: sample(port, "driftline_events_total", outcome="learned") == 0,
                     timeout=60, what="the metrics port")
            browser.get(url)
            assert browser.title == "driftline"
            wait_for(lambda: browser.execute_script(
                "return document.getElementById('state').className") != "pill wait",
                timeout=20, what="the page's first poll")
            assert console.errors() == []

            # Events flow while the page is open: the charts fill as they arrive.
            with open(tmp_path / "publish.log", "wb") as log:
                publisher = subprocess.Popen(
                    [sys.executable, "-m", "driftline", "publish", "--bootstrap-servers",
                     kafka_bootstrap, "--topic", topic, "--dataset", "elec",
                     "--limit", str(EVENTS), "--rate", RATE],
                    stdout=log, stderr=subprocess.STDOUT)
            wait_for(lambda: sample(port, "driftline_events_total", outcome="learned") == EVENTS,
                     timeout=60 + EVENTS / float(RATE), what=f"{EVENTS} events learned")
            assert publisher.wait(timeout=60) == 0, (tmp_path / "publish.log").read_text()
            time.sleep(2.5)  # two more polls: the page shows the final figures

            expected = {*MEMBERS, "ensemble"}
            for chart in ("chart-prequential", "chart-rolling"):
                shown = wait_for(lambda c=chart: (lambda d: d if set(d) == expected and all(
                    v is not None for v in d.values()) else None)(legend(browser, c)),
                    timeout=10, what=f"every model's accuracy in #{chart}")
                for name, value in shown.items():
                    assert value is not None and 0.0 <= value <= 1.0 and math.isfinite(value), \
                        (chart, name, value)
                assert points(browser, chart) >= 3, chart
            # the legend shows what /metrics says
            live = sample(port, "driftline_prequential_accuracy", model="ensemble")
            assert live is not None
            assert abs(legend(browser, "chart-prequential")["ensemble"] - live) < 1e-5
            assert set(legend(browser, "chart-weights")) == set(MEMBERS)
            assert points(browser, "chart-rate") >= 3
            assert points(browser, "chart-lag") >= 3
            assert browser.execute_script(
                "return [...document.querySelectorAll('#models tr')].map(r => r.dataset.model)"
            ) == ["ensemble", *MEMBERS]
            # hovering a chart shows the values at that time
            from selenium.webdriver.common.action_chains import ActionChains

            canvas = browser.find_element("css selector", "#chart-prequential canvas")
            # Near the right end, where the latest points are (the chart may begin with a spell
            # before the partition was assigned, when no model had a value yet).
            ActionChains(browser).move_to_element_with_offset(
                canvas, int(canvas.size["width"] * 0.4), 0).perform()
            tip = browser.find_element("css selector", "#chart-prequential .tip")
            wait_for(tip.is_displayed, timeout=5, what="the chart's tooltip")
            assert "ensemble" in tip.text
            ActionChains(browser).move_to_element(browser.find_element("tag name", "h1")).perform()
            wait_for(lambda: not tip.is_displayed(), timeout=5, what="the tooltip to go")
            tile = browser.find_element("id", "v-accuracy").text
            assert tile.endswith("%") and float(tile[:-1]) > 50, tile

            with urllib.request.urlopen(f"{url}api/history", timeout=5) as response:
                history = json.load(response)
            assert history["interval_seconds"] == 1.0
            assert history["samples"][-1]["events"]["learned"] == EVENTS
            assert set(history["samples"][-1]["models"]) == expected

            for size, (width, height) in SIZES.items():
                path = screenshot(browser, f"dashboard-{size}.png", width, height)
                assert path.stat().st_size > 20_000, path
                overflow = browser.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{size}: the page is {overflow} px wider than the screen"
            assert console.errors() == []
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "dashboard-failure.png"))
            print(service.output()[-3000:])
            raise
        finally:
            if publisher is not None and publisher.poll() is None:
                publisher.kill()
                publisher.wait()
        assert service.stop() == 0, service.output()
