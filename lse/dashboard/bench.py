"""``python -m lse.dashboard.bench``: how fast the dashboard is on a big population.

The issue's scale: 1,000 alive individuals and 20,000 in history.  ``lse simulate`` makes such a
population with the real workers but takes a long while on a small machine, so by default a
synthetic writer lays the same files out directly (the store's layout, real
:class:`~lse.core.records.IndividualRecord` JSON with mutated DNA, death files, eval/ entries);
``--pop DIR`` measures an existing population instead (e.g. one made by ``lse simulate``).

Printed, each beside its baseline measured in the same run:

* first payload: a fresh server's ``GET /api/state?since=0`` (reads every record once, builds
  every panel), bytes on the wire gzipped; baseline: ``Store.records()``, the full read that
  ``lse status`` does on each refresh;
* per update: ``GET /api/state?since=CURSOR`` after a few births and kills (incremental read +
  the changed rows and panels), and an idle poll (nothing changed); baseline: ``Store.records()``
  again, i.e. what re-reading everything per update would cost;
* under load: the idle poll again while ``--idle-connections`` (500) connections that send
  nothing and ``--slow-connections`` (50) that trickle a request head a byte at a time are held
  open (issue 29: one thread per connection used to starve every request); baseline: the idle
  poll without them;
* in a real headless Chromium when one is installed: time to first render (from navigation
  start to the first complete drawing) and the drawing cost of one update.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import resource
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from lse.config import ExperimentConfig
from lse.dashboard.server import serve
from lse.core.dna import initial_dna
from lse.core.mutations import mutate
from lse.core.records import IndividualName, IndividualRecord, new_id
from lse.store import PopulationPaths, Store


def write_population(root: Path, alive: int = 1000, history: int = 20000, seed: int = 0) -> list[str]:
    """Lay out a population with ``alive`` alive individuals and ``history`` collected ones."""
    rng = random.Random(seed)
    Store(root).create(ExperimentConfig(population_size=alive, steps=25600, max_individuals=alive + history + 1000))
    paths = PopulationPaths(root)
    dnas = [initial_dna(input_channels=1)]
    for _ in range(200):  # a pool of plausible architectures (mutation chains)
        d, _ = mutate(rng.choice(dnas), rng)
        dnas.append(d)
    dna_json = [d.model_dump(mode="json") for d in dnas]
    t0 = time.time() - 3600 * 24
    ids: list[str] = []
    n = alive + history
    for k in range(n):
        born = t0 + k * (3600 * 24 / n)
        iid = new_id(now=born)
        parent = rng.choice(ids[-alive:]) if ids and k >= 100 else None
        val = min(0.95, 0.2 + 0.7 * k / n + rng.gauss(0, 0.03)) if rng.random() > 0.02 else None
        rec = IndividualRecord(
            id=iid, parent_id=parent, generation=0 if parent is None else 1 + k // 500, dna=rng.choice(dna_json),
            mutation=None if parent is None else {"name": rng.choice(["insert_convolution", "alter_channels", "identity",
                                                                      "alter_learning_rate", "add_skip"]), "details": {}},
            val_accuracy=None if val is None else max(0.0, val),
            failed_reason=None if val is not None else "diverged", steps=25600, examples=25600 * 50,
            flops={"train_per_batch": 1e9, "eval_per_batch": 3e8, "total": 2.6e13 * (1 + k / n)}, params=10000 + k,
            worker=f"w{k % 250}", host="bench", born_at=born, train_seconds=600.0, eval_seconds=10.0,
        )
        data = rec.model_dump_json().encode()
        if k < history:
            paths.history_record(iid).write_bytes(data.replace(b'"state":"alive"', b'"state":"dead"'))
            paths.history_death(iid).write_text(json.dumps({"killed_at": born + 600, "killed_by": "w0"}))
        else:
            d = paths.individual(IndividualName(iid, "alive", None if val is None else round(max(0.0, val), 6)))
            d.mkdir()
            paths.record_file(d).write_bytes(data)
            paths.weights_file(d).write_bytes(b"")  # the dashboard never reads weights
        ids.append(iid)
    for iid in ids[-5::-97][:40]:  # a few cached test accuracies, as `lse report` leaves them
        paths.eval_record(iid).write_text(json.dumps({"id": iid, "test_accuracy": 0.8, "test_fingerprint": "bench"}))
    return ids


def births(root: Path, count: int, rng: random.Random) -> None:
    """``count`` births, each killing one alive individual (a tournament's loser), as renames."""
    paths = PopulationPaths(root)
    alive = [e for e in Store(root).entries("alive")]
    for _ in range(count):
        victim = alive.pop(rng.randrange(len(alive)))
        os.rename(victim.path, paths.individual(IndividualName(victim.id, "dead", victim.fitness, "bench")))
        src = json.loads(paths.record_file(paths.individual(IndividualName(victim.id, "dead", victim.fitness, "bench"))).read_text())
        iid = new_id()
        src.update(id=iid, parent_id=victim.id, born_at=time.time(), val_accuracy=0.9)
        d = paths.individual(IndividualName(iid, "alive", 0.9))
        tmp = root / "workers" / f"tmp-{iid}"
        tmp.mkdir(parents=True)
        (tmp / "record.json").write_text(json.dumps(src))
        (tmp / "weights.safetensors").write_bytes(b"")
        os.rename(tmp, d)


@contextlib.contextmanager
def hold_connections(port: int, idle: int, slow: int, host: str = "127.0.0.1"):
    """Hold ``idle`` connections that send nothing and ``slow`` ones that send a request head a
    byte every 0.2 s (never completing it), for the duration of the block (raises the soft
    open-file limit when it must; both ends of each connection may live in this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (idle + slow) + 200
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    socks: list[socket.socket] = []
    stop = threading.Event()
    head = b"GET /api/state?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000

    def trickle() -> None:
        i = 0
        while not stop.wait(0.2):
            for s in socks[idle:]:
                try:
                    s.send(head[i % len(head):i % len(head) + 1])
                except OSError:
                    pass
            i += 1

    t = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(idle + slow):
            socks.append(socket.create_connection((host, port), timeout=10))
        t.start()
        yield socks
    finally:
        stop.set()
        if t.is_alive():
            t.join(5)
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _get(url: str) -> tuple[float, int, dict]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        raw = r.read()
        enc = r.headers.get("Content-Encoding")
    dt = time.perf_counter() - t
    return dt, len(raw), json.loads(gzip.decompress(raw) if enc == "gzip" else raw)


def _median_time(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def browser_figures(url: str, root: Path, rng: random.Random) -> dict | None:
    """First render and one update's drawing cost in headless Chromium; None without one."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return None
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="lse-bench-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        driver.set_page_load_timeout(120)
        driver.get(url)
        WebDriverWait(driver, 300).until(lambda d: d.execute_script("return window.lseStats.firstRenderMs") is not None)
        first = driver.execute_script("return window.lseStats.firstRenderMs")
        first_fetch = driver.execute_script("return window.lseStats.lastFetchMs")
        updates = []
        for _ in range(3):
            n = driver.execute_script("return window.lseStats.pops[0].rows.size")
            births(root, 5, rng)
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.lseStats.pops[0].rows.size") > n)
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.lseStats.lastUpdateMs") is not None)
            updates.append((driver.execute_script("return window.lseStats.lastUpdateMs"),
                            driver.execute_script("return window.lseStats.lastFetchMs")))
        return {"first_render_ms": first, "first_fetch_ms": first_fetch,
                "update_draw_ms": statistics.median(u[0] for u in updates),
                "update_fetch_ms": statistics.median(u[1] for u in updates)}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lse.dashboard.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pop", type=Path, help="measure this population (default: write a synthetic one)")
    ap.add_argument("--alive", type=int, default=1000)
    ap.add_argument("--history", type=int, default=20000)
    ap.add_argument("--idle-connections", type=int, default=500, help="idle connections held for the load figure")
    ap.add_argument("--slow-connections", type=int, default=50, help="trickling connections held for the load figure")
    ap.add_argument("--no-browser", action="store_true", help="skip the headless Chromium figures")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic population")
    args = ap.parse_args(argv)
    rng = random.Random(1)
    tmp = None
    if args.pop is None:
        tmp = Path(tempfile.mkdtemp(prefix="lse-dashboard-bench-"))
        root = tmp / "pop"
        t = time.perf_counter()
        write_population(root, args.alive, args.history)
        print(f"wrote a synthetic population ({args.alive} alive, {args.history} in history) in "
              f"{time.perf_counter() - t:.1f} s: {root}")
    else:
        root = args.pop
    try:
        n_alive = len(Store(root).entries("alive"))
        n_hist = sum(1 for n in os.listdir(PopulationPaths(root).history) if n.endswith(".json") and n.count(".") == 1)
        print(f"population: {n_alive} alive, {n_hist} in history")
        baseline = _median_time(lambda: Store(root).records(), 3)

        server = serve([root], port=0, interval=0.0).start()
        try:
            first, first_bytes, st = _get(server.url + "api/state?since=0")
            rows = len(st["pops"][0]["rows"])
            idle = _median_time(lambda: _get(server.url + f"api/state?since={st['cursor']}"), 5)
            upd = []
            cursor = st["cursor"]
            for _ in range(5):
                births(root, 5, rng)
                dt, size, got = _get(server.url + f"api/state?since={cursor}")
                cursor = got["cursor"]
                upd.append((dt, size, len(got["pops"][0]["rows"])))
            port = server.httpd.server_address[1]
            with hold_connections(port, args.idle_connections, args.slow_connections):
                loaded = _median_time(lambda: _get(server.url + f"api/state?since={cursor}"), 5)
            browser = None if args.no_browser else browser_figures(server.url, root, rng)
        finally:
            server.close()

        print()
        print(f"{'':44}{'dashboard':>14}{'baseline: Store.records()':>30}")
        print(f"{'first payload (all ' + str(rows) + ' rows + panels)':44}{first:>12.2f} s{baseline:>28.2f} s")
        print(f"{'  bytes on the wire (gzip)':44}{first_bytes / 1e6:>11.2f} MB")
        u = statistics.median(x[0] for x in upd)
        print(f"{'update after 5 births + 5 kills':44}{1000 * u:>11.1f} ms{baseline:>28.2f} s")
        print(f"{'  rows sent / bytes':44}{statistics.median(x[2] for x in upd):>11.0f} / "
              f"{statistics.median(x[1] for x in upd) / 1e3:.1f} kB")
        print(f"{'idle poll (nothing changed)':44}{1000 * idle:>11.1f} ms")
        label = f"  with {args.idle_connections} idle + {args.slow_connections} slow conns"
        print(f"{label:44}{1000 * loaded:>11.1f} ms{'(baseline: idle poll above)':>30}")
        if browser is None:
            print("headless Chromium: not measured (no chromium/chromedriver/selenium, or --no-browser)")
        else:
            print(f"{'Chromium: first render (from navigation)':44}{browser['first_render_ms']:>11.0f} ms"
                  f"   (of which fetch {browser['first_fetch_ms']:.0f} ms)")
            print(f"{'Chromium: one update, drawing':44}{browser['update_draw_ms']:>11.0f} ms"
                  f"   (fetch {browser['update_fetch_ms']:.0f} ms)")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
