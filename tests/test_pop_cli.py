"""`lse pop ls`, `lse pop show`, `lse gc` on a real population (with a nasty path)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from lse.reports import pop as pop_cli
from lse.store import Store

from _store_helpers import make_record, make_weights, new_store


@pytest.fixture
def app():
    a = typer.Typer()
    pop_cli.register_cli(a)
    return a


@pytest.fixture
def population(weird_tmp_path):
    """initial (killed, collected) -> child (alive) -> grandchild (alive); a failed child."""
    root = weird_tmp_path / "pop"
    s = new_store(root)
    s.register_worker("w0", auto_heartbeat=False)
    e0 = s.publish(make_record(0.2), make_weights())
    r0, _ = s.read_parent(e0)
    e1 = s.publish(make_record(0.5, parent=r0), make_weights())
    r1, _ = s.read_parent(e1)
    e2 = s.publish(make_record(0.7, parent=r1), make_weights())
    e3 = s.publish(make_record(None, parent=r1, failed_reason="loss became NaN"), None, alive=False)
    s.kill(e0)
    s.gc()
    s.close()
    return root, [e0.id, e1.id, e2.id, e3.id]


def run(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_ls_json_lists_everyone(app, population):
    root, ids = population
    res = run(app, "pop", "ls", "--pop", root, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [d["id"] for d in data] == sorted(ids)
    by = {d["id"]: d for d in data}
    assert by[ids[0]]["collected"] and by[ids[0]]["state"] == "dead"
    assert by[ids[2]]["parent_id"] == ids[1]


def test_ls_filters_and_sorts(app, population):
    root, ids = population
    res = run(app, "pop", "ls", "--pop", root, "--json", "--state", "alive", "--sort", "accuracy")
    assert [d["id"] for d in json.loads(res.output)] == [ids[2], ids[1]]


def test_ls_table(app, population):
    root, ids = population
    res = run(app, "pop", "ls", "--pop", root)
    assert res.exit_code == 0, res.output
    assert "4 individuals" in res.output
    assert "0.7000" in res.output and "identity" in res.output and "NaN" in res.output


def test_ls_bad_option_lists_valid(app, population):
    root, _ = population
    res = run(app, "pop", "ls", "--pop", root, "--sort", "color")
    assert res.exit_code == 1
    assert "valid: id, accuracy" in res.output


def test_show_lineage_back_to_initial(app, population):
    root, ids = population
    res = run(app, "pop", "show", ids[2], "--pop", root)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "architecture" in out and "cannot render" not in out
    assert "2 ancestors" in out
    assert out.index(ids[2]) < out.index(ids[1], out.index("lineage")) < out.index(ids[0], out.index("lineage"))
    assert "initial" in out


def test_show_unique_prefix_and_unknown(app, population):
    root, ids = population
    assert run(app, "pop", "show", ids[3][:-3], "--pop", root).exit_code == 0
    res = run(app, "pop", "show", "nope", "--pop", root)
    assert res.exit_code == 1 and "lse pop ls" in res.output


def test_not_a_population(app, weird_tmp_path):
    res = run(app, "pop", "ls", "--pop", weird_tmp_path / "missing")
    assert res.exit_code == 1 and "no population" in res.output


def test_gc_by_hand(app, population):
    root, ids = population
    s = Store(root)
    s.kill(s.find(ids[1]))
    s.close()
    res = run(app, "gc", "--pop", root)
    assert res.exit_code == 0, res.output
    assert "collected 1 dead" in res.output
    data = json.loads(run(app, "pop", "ls", "--pop", root, "--json").output)
    assert len(data) == 4
