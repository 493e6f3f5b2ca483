"""The ``lse`` command: wires each module's commands into one typer app, no logic here."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Large-Scale Evolution of Image Classifiers: lock-free neuro-evolution over a shared filesystem.",
    no_args_is_help=True,
    add_completion=False,
)

# Each module registers its own commands (one concept per module); see docs/ARCHITECTURE.md.
# Modules add themselves below, e.g.:  from lse.store.population import population as _store; _store.register_cli(app)

from lse.runners import bench as _bench  # noqa: E402  (lse bench, lse data fetch)

_bench.register_cli(app)

from lse.reports import report as _report  # noqa: E402  (lse report)
from lse.reports import status as _status  # noqa: E402  (lse status)

_report.register_cli(app)
_status.register_cli(app)

from lse.reports import pop as _pop  # noqa: E402  (lse pop ls/show, lse gc)

_pop.register_cli(app)

from lse.runners import launch as _launch  # noqa: E402  (lse launch, lse stop)

_launch.register_cli(app)

from lse.runners import live as _live  # noqa: E402  (lse mutations, lse reset, lse events)

_live.register_cli(app)

from lse.runners import simulate as _simulate  # noqa: E402  (lse simulate)

_simulate.register_cli(app)

from lse.runners import reference as _reference  # noqa: E402  (lse reference: the hand-designed anchor)

_reference.register_cli(app)

from lse.reports import twostep as _twostep  # noqa: E402  (lse ae rank/encode/report/pipeline: seed 000)

from lse.runners import twostep as _twostep_runs  # noqa: E402

_twostep_runs.register_cli(_twostep.register_cli(app))


@app.command("algorithms")
def algorithms_cmd(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """List every algorithm (lse launch --algorithm NAME), its paper, and its options."""
    import json

    from lse.algorithms import describe

    rows = describe()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        kind = "generational" if r["generational"] else "steady-state"
        typer.echo(f"{r['name']:<16} {r['summary']}  [{kind}]")
        typer.echo(f"{'':<16} paper: {r['paper']}")
        for o in r["options"]:
            typer.echo(f"{'':<16} --algorithm-option {o['name']}=VALUE  (default {o['default']}) {o['meaning']}")

from lse.runners import export as _export  # noqa: E402  (lse export, lse predict: the model out)

_export.register_cli(app)

from lse.runners import retrain as _retrain  # noqa: E402  (lse retrain: a final model of a found architecture)

_retrain.register_cli(app)

from lse import dashboard as _dashboard  # noqa: E402  (lse dashboard)

_dashboard.register_cli(app)

if __name__ == "__main__":  # python -m lse.cli ...: the Slurm finishing job's entry (lse.runners.slurm)
    app()
