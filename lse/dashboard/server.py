"""The dashboard's HTTP server: Python's own ``http.server``, GET only, read-only.

Why the standard library and not a web framework: the server answers five GET routes with
JSON and three static files; ``ThreadingHTTPServer`` does that with no new dependency to install
on a cluster's login node and no third-party code between the population and the network.
The page is plain JavaScript drawing SVG and canvas (``static/``), shipped in the package: no
CDN, no build step, nothing fetched at run time.

Routes::

    GET /                          the page (static/index.html)
    GET /static/<file>             app.js, app.css
    GET /api/state?since=N         what changed after cursor N in every population (N=0: all)
    GET /api/individual?pop=K&id=I one individual: record, architecture, lineage

Safety.  It binds 127.0.0.1 unless told otherwise.  Binding another address needs
``allow_remote=True`` *and* a token; then every request must carry it (``?token=`` once, after
which an HttpOnly, SameSite=Strict cookie carries it), compared in constant time.  On a
loopback bind the Host header must name the loopback (a DNS-rebinding page cannot read it).
Every response forbids inline scripts (Content-Security-Policy), so even a string that escaped
the page's escaping could not run; the page itself only ever sets ``textContent``.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lse.dashboard.reader import Counter, PopulationReader
from lse.errors import LseError

log = logging.getLogger(__name__)

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
COOKIE = "lse_dashboard_token"


class DashboardError(LseError):
    """The dashboard cannot start as asked (address, token, population)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Dashboard:
    """The populations one dashboard shows, refreshed lazily: at most every ``interval`` seconds,
    and only while someone is asking (an idle dashboard reads nothing)."""

    def __init__(self, pops: Sequence[str | Path], labels: Sequence[str] | None = None, interval: float = 1.0) -> None:
        labels = list(labels or [])
        if labels and len(labels) != len(pops):
            raise DashboardError(f"{len(labels)} --label for {len(pops)} --pop", "give one --label per --pop, or none")
        self.counter = Counter()
        self.readers = []
        for k, pop in enumerate(pops):
            pop = Path(pop)
            if not (pop / "experiment.json").exists() or not (pop / "individuals").is_dir():
                raise DashboardError(f"{pop} is not a population (no experiment.json or individuals/)",
                                     "pass the folder given to `lse launch --pop`")
            self.readers.append(PopulationReader(pop, labels[k] if labels else pop.name or str(pop), self.counter))
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -math.inf

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if force or time.monotonic() - self._last >= self.interval:
                for r in self.readers:
                    r.refresh()
                self._last = time.monotonic()

    def state(self, since: int) -> dict:
        self.refresh()
        pops = [r.changes(since) for r in self.readers]
        return {"cursor": self.counter.last, "since": since, "now": time.time(),
                "poll_ms": int(self.interval * 1000), "pops": pops}

    def individual(self, pop: int, iid: str) -> dict | None:
        if not 0 <= pop < len(self.readers):
            return None
        self.refresh()
        return self.readers[pop].detail(iid)


def dumps(obj) -> bytes:
    """JSON without NaN/Infinity (not JSON; the browser's parser refuses them)."""
    return json.dumps(_clean(obj), separators=(",", ":"), allow_nan=False).encode()


def _clean(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def make_handler(dash: Dashboard, token: str | None, loopback: bool):
    class Handler(BaseHTTPRequestHandler):
        server_version = "lse-dashboard"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: one line per request would flood a terminal
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
            if len(body) > 4096 and "gzip" in (self.headers.get("Accept-Encoding") or ""):
                body = gzip.compress(body, compresslevel=5)
                extra = {**(extra or {}), "Content-Encoding": "gzip"}
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", CSP)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, message: str) -> None:
            self._send(code, dumps({"error": message}), "application/json")

        def _authorised(self, query: dict) -> tuple[bool, dict]:
            if loopback:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
                if not is_loopback(host):
                    return False, {}
            if token is None:
                return True, {}
            given = (query.get("token") or [""])[0]
            if given and hmac.compare_digest(given.encode(), token.encode()):
                return True, {"Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"}
            for part in (self.headers.get("Cookie") or "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE and hmac.compare_digest(v.encode(), token.encode()):
                    return True, {}
            return False, {}

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            ok, extra = self._authorised(query)
            if not ok:
                self._error(403, "forbidden: this dashboard needs its token (?token=...), or a loopback Host")
                return
            try:
                if url.path in ("/", "/index.html"):
                    self._static("index.html", extra)
                elif url.path.startswith("/static/"):
                    self._static(url.path[len("/static/"):], extra)
                elif url.path == "/api/state":
                    since = _int_arg(query, "since", 0)
                    self._send(200, dumps(dash.state(since)), "application/json", extra)
                elif url.path == "/api/individual":
                    got = dash.individual(_int_arg(query, "pop", -1), (query.get("id") or [""])[0])
                    if got is None:
                        self._error(404, "no such individual (or its record is malformed)")
                    else:
                        self._send(200, dumps(got), "application/json", extra)
                else:
                    self._error(404, "not found")
            except BrokenPipeError:
                pass
            except Exception:  # a bug must not kill the server thread silently, nor leak a trace
                log.exception("dashboard request %s failed", url.path)
                self._error(500, "internal error (see the dashboard's log)")

        def _static(self, name: str, extra: dict) -> None:
            if name not in STATIC:
                self._error(404, "not found")
                return
            body = resources.files("lse.dashboard").joinpath("static", name).read_bytes()
            self._send(200, body, STATIC[name], extra)

        def _refuse(self) -> None:
            self._error(405, "read-only: only GET")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


def _int_arg(query: dict, name: str, default: int) -> int:
    try:
        return int((query.get(name) or [default])[0])
    except ValueError:
        return default


class Server:
    """A running dashboard (``url``; ``close()``), serving in a daemon thread or in the caller."""

    def __init__(self, dash: Dashboard, host: str = "127.0.0.1", port: int = 8080, *,
                 allow_remote: bool = False, token: str | None = None) -> None:
        loopback = is_loopback(host)
        if not loopback:
            if not allow_remote:
                raise DashboardError(
                    f"--host {host} would expose the dashboard beyond this machine",
                    "keep the default 127.0.0.1 and use an SSH tunnel (see docs/DASHBOARD.md), or add --allow-remote "
                    "(a token is then required on every request)")
            token = token or secrets.token_urlsafe(24)
        self.token = token
        self.httpd = ThreadingHTTPServer((host, port), make_handler(dash, token, loopback))
        self.httpd.daemon_threads = True
        self.dash = dash
        shown = host if ":" not in host else f"[{host}]"
        self.url = f"http://{shown}:{self.httpd.server_address[1]}/" + (f"?token={token}" if token else "")
        self._thread: threading.Thread | None = None

    def _warm(self) -> None:
        """Read the populations now, in the background: the first page load then finds them read
        (on 20k records the first read takes seconds, see docs/DASHBOARD.md)."""
        threading.Thread(target=self.dash.refresh, kwargs={"force": True}, name="lse-dashboard-warm", daemon=True).start()

    def start(self) -> "Server":
        self._warm()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="lse-dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._warm()
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(pops: Sequence[str | Path], labels: Sequence[str] | None = None, host: str = "127.0.0.1",
          port: int = 8080, *, allow_remote: bool = False, token: str | None = None,
          interval: float = 1.0) -> Server:
    """Build and bind a dashboard (not yet serving: call ``start()`` or ``serve_forever()``)."""
    return Server(Dashboard(pops, labels, interval), host, port, allow_remote=allow_remote, token=token)
