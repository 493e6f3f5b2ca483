"""`lse dashboard` in a real headless Chromium, on a real running experiment.

One worker runs the real evolution loop against a real store, with a stand-in trainer (no SGD,
a birth every few tenths of a second) that the test can pause, so that "the right number of
points" has one answer.  Checks: the progress curve and Figure 1 draw exactly the population's
points; a new birth appears without a reload; clicking an individual on the scatter shows its
lineage; a record holding <script> in its text fields shows it as text and runs nothing.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and selenium (test extra);
skips, saying which is missing, without them.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
import torch
from _dashboard_helpers import IMG, SCRIPT

from lse.reports import curves as cv
from lse.config import ExperimentConfig, WorkerOptions
from lse.dashboard.server import serve
from lse.core.records import IndividualRecord, new_id
from lse.store import Store
from lse.runners.worker import ChildResult, run_worker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.timeout(240)


class PausableStandIn:
    """Fitness grows with the number of convolutions; ``running`` cleared = training waits."""

    input_channels = 1

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.running = threading.Event()
        self.running.set()
        self.busy = threading.Event()

    def prepare(self, config) -> None:
        pass

    def train_child(self, child, parent_states, recipe, *, seed, should_stop):
        dna, parent_state = child.dna, parent_states or None
        while not self.running.wait(0.05):
            if should_stop():
                from lse.errors import StopRequested

                raise StopRequested("stop")
        self.busy.set()
        time.sleep(self.delay)
        acc = min(0.9, 0.1 + 0.1 * len(dna.conv_edges()) + (seed % 1000) / 20000)
        return ChildResult(acc, None, {"w": torch.zeros(2)}, inheritance={"kept": 0, "reinitialised": 1},
                           flops={"train_per_batch": 10.0, "eval_per_batch": 1.0, "total": 100.0 + seed % 50},
                           params=2, steps=10, examples=500)


def _births(pop) -> int:
    return len(os.listdir(pop / "individuals")) + len([n for n in os.listdir(pop / "history") if n.count(".") == 1])


def _pause(trainer: PausableStandIn, pop) -> None:
    """Stop new births and wait until the count stands still (a child in flight is published)."""
    trainer.running.clear()
    last, still = -1, 0
    while still < 3:
        time.sleep(0.4)
        n = _births(pop)
        still = still + 1 if n == last else 0
        last = n


@pytest.fixture
def experiment(tmp_path):
    pop = tmp_path / "pop"
    store = Store(pop)
    store.create(ExperimentConfig(population_size=5, steps=10, max_individuals=100000))
    # A valid record whose text fields hold markup, fit enough never to lose a tournament.
    store.register_worker(auto_heartbeat=False)
    markup = IndividualRecord(id=new_id(), dna=__import__("lse.core.dna", fromlist=["x"]).initial_dna(input_channels=1).model_dump(mode="json"),
                              val_accuracy=0.99, host=SCRIPT, extra={"note": IMG},
                              flops={"train_per_batch": 1.0, "eval_per_batch": 1.0, "total": 10.0})
    store.publish(markup, {"w": torch.zeros(2)})
    store.close()
    trainer = PausableStandIn(delay=0.25)
    t = threading.Thread(target=run_worker, args=(pop, WorkerOptions(threads=1, heartbeat_seconds=0.5), trainer),
                         kwargs={"handle_signals": False}, daemon=True)
    t.start()
    server = serve([pop], ["live run"], port=0, interval=0.2).start()
    yield pop, trainer, server, markup.id
    trainer.running.set()
    Store(pop).request_stop("test over")
    t.join(30)
    server.close()


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _expected(pop):
    records = Store(pop).records()
    inds = [cv.from_record(r) for r in records]
    curve = cv.progress_curve(inds, {})
    points = sum(1 for i in inds if i.has_fitness)
    return inds, len(curve.changes()), points, len(records)


def _synced(driver, count: int) -> None:
    """Wait until the page has drawn ``count`` individuals and a later poll has come back."""
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return window.lseStats.pops[0] ? window.lseStats.pops[0].rows.size : -1") == count)
    n = driver.execute_script("return window.lseStats.updates")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return window.lseStats.updates") > n + 1)


def test_dashboard_in_chromium(experiment, browser):
    pop, trainer, server, markup_id = experiment
    while _births(pop) < 8:
        time.sleep(0.2)
    _pause(trainer, pop)
    browser.get(server.url)
    inds, steps, points, total = _expected(pop)
    _synced(browser, total)

    # Curve and scatter: exactly the population's points.
    for chart in ("curve-hours", "curve-flops"):
        assert len(browser.find_elements(By.CSS_SELECTOR, f"#{chart} circle.curve-pt[data-pop='0']")) == steps
    canvas = browser.find_element(By.CSS_SELECTOR, "canvas.scatter[data-pop='0']")
    assert int(canvas.get_attribute("data-points")) == points
    assert int(canvas.get_attribute("data-alive")) == sum(i.alive and i.has_fitness for i in inds)

    # A new birth appears without a reload.
    browser.execute_script("window.__same_page = 42")
    trainer.running.set()
    WebDriverWait(browser, 30).until(lambda d: int(canvas.get_attribute("data-points")) > points)
    assert browser.execute_script("return window.__same_page") == 42

    # Click an individual on the scatter: its lineage is shown.
    _pause(trainer, pop)
    inds, _, _, total = _expected(pop)
    _synced(browser, total)
    by_id = {i.id: i for i in inds}
    target = max((i for i in inds if i.parent_id is not None and i.has_fitness), key=lambda i: i.generation or 0)
    xy = browser.execute_script("return window.lseScatterPoint(0, arguments[0])", target.id)
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(browser).move_to_element_with_offset(canvas, int(xy["x"] - w / 2), int(xy["y"] - h / 2)).click().perform()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "detail").get_attribute("data-id") == target.id)
    picked = target.id
    chain = [i.id for i in cv.lineage(inds, picked)]
    WebDriverWait(browser, 10).until(
        lambda d: [li.get_attribute("data-id") for li in d.find_elements(By.CSS_SELECTOR, "#lineage li[data-id]")] == chain)
    assert by_id[chain[0]].parent_id is None and len(chain) == (by_id[picked].generation or 0) + 1
    assert chain[-2] in [li.get_attribute("data-id") for li in browser.find_elements(By.CSS_SELECTOR, "#parents li")]

    # Markup in a record is text: shown literally, nothing runs, no element is created from it.
    browser.find_element(By.CSS_SELECTOR, f".alive-row[data-id='{markup_id}']").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "detail").get_attribute("data-id") == markup_id)
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#record td")]
    assert SCRIPT in cells
    assert any("<img src=x onerror=" in c for c in cells)  # inside the JSON of `extra`
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1  # app.js only
    assert browser.find_elements(By.TAG_NAME, "img") == []

