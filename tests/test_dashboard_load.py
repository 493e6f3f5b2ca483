"""Issue 29: the dashboard under connections that never finish.  500 idle and 50 slow
(trickling) connections are held open while ordinary requests are made; every one of them is
answered.  A hang guard (each request has a timeout), never a timing."""

from __future__ import annotations

import json
import resource
import socket
import threading
import urllib.request

import pytest
from _dashboard_helpers import make_population

from lse.dashboard.bench import hold_connections
from lse.dashboard.server import serve

IDLE, SLOW, ORDINARY = 500, 50, 20


@pytest.fixture
def server(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (IDLE + SLOW) + 200  # both ends of every connection live in this process
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    pop = tmp_path / "pop"
    make_population(pop)
    srv = serve([pop], ["load"], port=0, interval=0.0).start()
    yield srv
    srv.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_and_slow_connections_never_starve_ordinary_requests(server):
    port = server.httpd.server_address[1]
    with urllib.request.urlopen(server.url + "api/state?since=0", timeout=15) as r:  # pool warmed
        assert r.status == 200
    threads_before = threading.active_count()
    with hold_connections(port, IDLE, SLOW):
        for k in range(ORDINARY):
            path = "api/state?since=0" if k % 2 == 0 else ""
            with urllib.request.urlopen(server.url + path, timeout=15) as r:  # the hang guard
                assert r.status == 200
                body = r.read()
            if path:
                assert json.loads(body)["pops"][0]["label"] == "load"
        # a pool, not a thread per connection: 550 open connections added no 550 threads
        assert threading.active_count() < threads_before + 20


def test_connections_past_the_cap_are_closed_not_queued(tmp_path):
    from lse.dashboard.httpd import BoundedHTTPServer
    from lse.dashboard.server import Dashboard, make_handler

    pop = tmp_path / "pop"
    make_population(pop)
    httpd = BoundedHTTPServer(("127.0.0.1", 0), make_handler(Dashboard([pop]), None, True), max_connections=5,
                              head_timeout=3.0)  # longer than a stalled accept (refused >= 1 below)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        socks = [socket.create_connection(httpd.server_address, timeout=10) for _ in range(8)]
        extra = socks[-1]
        extra.settimeout(10)
        assert extra.recv(1) == b""  # closed by the server: over the cap (or idle past 3 s)
        for s in socks:  # idle ones are closed after head_timeout, never held for good
            s.settimeout(10)
            assert s.recv(1) == b""
        url = f"http://127.0.0.1:{httpd.server_address[1]}/api/state?since=0"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        assert httpd.refused >= 1
    finally:
        httpd.shutdown()
        httpd.server_close()
        for s in socks:
            s.close()
