"""`lse dashboard`'s endpoints on a planted population: read-only (the tree is byte-identical
after every route), hostile entries counted and never served, the change cursor, schema-v2
panels, and the token on a non-loopback bind."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import pytest
from _dashboard_helpers import IMG, SCRIPT, make_population, tree_digest
from _store_helpers import make_record, make_weights
from typer.testing import CliRunner

from lse.cli import app
from lse.dashboard.server import DashboardError, serve
from lse.store import Store


@pytest.fixture
def planted(tmp_path):
    pop = tmp_path / "pop"
    info = make_population(pop)
    server = serve([pop], ["planted"], port=0, interval=0.0).start()
    yield pop, info, server
    server.close()


def get(url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return r.status, r.headers, body


def state(server, since=0) -> dict:
    return json.loads(get(f"{server.url}api/state?since={since}")[2])


def rows(pop_state: dict) -> dict[str, dict]:
    return {r[0]: dict(zip(pop_state["fields"], r)) for r in pop_state["rows"]}


def test_never_writes_the_population(planted):
    pop, info, server = planted
    before = tree_digest(pop)
    for path in ["", "static/app.js", "static/app.css", "api/state?since=0", "api/state?since=3",
                 f"api/individual?pop=0&id={info['best']}", f"api/individual?pop=0&id={info['markup']}",
                 f"api/individual?pop=0&id={info['killed']}", "api/individual?pop=0&id=../../etc"]:
        try:
            get(server.url + path)
        except urllib.error.HTTPError as e:
            assert e.code == 404
    assert tree_digest(pop) == before  # nothing renamed, quarantined, created or touched
    for method in ("POST", "PUT", "DELETE"):
        conn = http.client.HTTPConnection("127.0.0.1", server.httpd.server_address[1], timeout=10)
        conn.request(method, "/api/state")
        assert conn.getresponse().status == 405
        conn.close()
    assert tree_digest(pop) == before


def test_hostile_entries_are_counted_never_served(planted):
    pop, info, server = planted
    s = state(server)
    p = s["pops"][0]
    assert set(rows(p)) == set(info["good"])  # every good individual, nothing else
    assert p["malformed"] == 3 and p["quarantined"] == 1 and p["foreign"] == 3
    body = get(server.url + "api/state?since=0")[2].decode()
    assert "broken" not in body and "evil" not in body and "stray" not in body
    # Valid records holding markup are served as data (JSON strings): the page shows them as text.
    markup = json.loads(get(f"{server.url}api/individual?pop=0&id={info['markup']}")[2])
    assert markup["record"]["host"] == SCRIPT and markup["record"]["extra"]["note"] == IMG
    assert markup["record"]["species"] == IMG


def test_rows_states_tests_and_lineage(planted):
    pop, info, server = planted
    r = rows(state(server)["pops"][0])
    assert r[info["killed"]]["state"] == "dead" and r[info["killed"]]["killed_by"]
    assert r[info["failed"]]["failed"] and r[info["failed"]]["state"] == "dead"
    assert r[info["best"]]["test"] == 0.58  # from eval/, never computed here
    d = json.loads(get(f"{server.url}api/individual?pop=0&id={info['best']}")[2])
    assert [b["id"] for b in d["lineage"]] == info["chain"] and d["lineage_complete"]
    assert [b["id"] for b in d["parents"]] == [info["chain"][1]]
    assert {b["id"] for b in d["children"]} == {info["failed"], info["markup"]}
    assert d["architecture"]["line"].endswith("GAP > FC10") and d["architecture"]["dot"].startswith("digraph")
    assert d["architecture"]["graph"]["vertices"][0]["role"] == "input"


def test_cursor_returns_only_changes(planted):
    pop, info, server = planted
    first = state(server)
    again = state(server, first["cursor"])
    assert again["pops"][0]["rows"] == [] and again["pops"][0]["panels"] == {}
    store = Store(pop)
    store.register_worker(auto_heartbeat=False)
    child = make_record(0.9, parent=make_record(0.1, id=info["best"]))
    store.publish(child, make_weights(9))
    later = state(server, first["cursor"])
    # The worker, judged as `lse status` judges it: same host, its process exists.
    assert [(w["id"], w["state"], w["births"]) for w in later["pops"][0]["workers"]] == [(store.worker.id, "alive", 1)]
    store.close()
    assert set(rows(later["pops"][0])) == {child.id}
    assert {"overview", "curve"} <= set(later["pops"][0]["panels"])
    assert later["pops"][0]["panels"]["curve"]["best_id"][-1] == child.id
    assert later["cursor"] > first["cursor"]


def test_v2_panels_and_their_absence(tmp_path):
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    make_population(v2, hostile=False)
    make_population(v1, v2=False, hostile=False)
    server = serve([v2, v1], ["with v2", "v1 only"], port=0, interval=0.0).start()
    try:
        a, b = state(server)["pops"]
    finally:
        server.close()
    assert (a["label"], b["label"]) == ("with v2", "v1 only")
    pa, pb = a["panels"], b["panels"]
    assert pa["pareto"]["objectives"] == ["compression", "reconstruction"]
    alive = [k for k, r in rows(a).items() if r["state"] == "alive"]
    assert len(pa["pareto"]["points"]) == len(alive) and 1 <= pa["pareto"]["front_size"] <= len(alive)
    assert pa["generations"]["generations"][0]["generation"] == 0
    assert pa["ages"]["alive"] == len(alive) and set(pa["species"]["species"]) >= {"s0"}
    assert all(pb[k] is None for k in ("pareto", "species", "generations", "ages"))


def test_remote_bind_needs_the_flag_and_the_token(tmp_path):
    pop = tmp_path / "pop"
    make_population(pop, hostile=False)
    with pytest.raises(DashboardError, match="SSH tunnel"):
        serve([pop], host="0.0.0.0", port=0)
    server = serve([pop], host="0.0.0.0", port=0, allow_remote=True, token="s3cret-token").start()
    base = f"http://127.0.0.1:{server.httpd.server_address[1]}/"
    try:
        assert server.token == "s3cret-token" and "token=s3cret-token" in server.url
        for path in ["", "static/app.js", "api/state?since=0", "api/state?since=0&token=wrong"]:
            with pytest.raises(urllib.error.HTTPError) as e:
                get(base + path)
            assert e.value.code == 403
        status, headers, _ = get(base + "?token=s3cret-token")
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(base + "api/state?since=0", {"Cookie": cookie})[0] == 200
        with pytest.raises(urllib.error.HTTPError):
            get(base + "api/state?since=0", {"Cookie": "lse_dashboard_token=nope"})
    finally:
        server.close()
    generated = serve([pop], host="0.0.0.0", port=0, allow_remote=True)
    try:
        assert generated.token and len(generated.token) >= 24
    finally:
        generated.httpd.server_close()


def test_loopback_bind_refuses_foreign_host_header(planted):
    _, _, server = planted
    with pytest.raises(urllib.error.HTTPError) as e:  # a DNS-rebinding page
        get(server.url + "api/state?since=0", {"Host": "evil.example:8080"})
    assert e.value.code == 403
    status, headers, _ = get(server.url)
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"


def test_page_sets_only_text():
    """The page's one safety rule, checked in its source: data never goes through an HTML parser."""
    from importlib import resources

    js = resources.files("lse.dashboard").joinpath("static", "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js.split("\n", 6)[-1], sink  # the header comment names them


def test_cli_refuses_a_non_population_and_a_public_bind(tmp_path):
    r = CliRunner().invoke(app, ["dashboard", "--pop", str(tmp_path)])
    assert r.exit_code == 1 and "not a population" in r.output
    pop = tmp_path / "pop"
    make_population(pop, hostile=False)
    r = CliRunner().invoke(app, ["dashboard", "--pop", str(pop), "--host", "0.0.0.0", "--port", "0"])
    assert r.exit_code == 1 and "--allow-remote" in r.output
