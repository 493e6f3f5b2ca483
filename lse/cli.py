"""The ``lse`` command: wires each module's commands into one typer app, no logic here."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Large-Scale Evolution of Image Classifiers: lock-free neuro-evolution over a shared filesystem.",
    no_args_is_help=True,
    add_completion=False,
)

# Each module registers its own commands (one concept per module); see docs/ARCHITECTURE.md.
# Modules add themselves below, e.g.:  from lse import store as _store; _store.register_cli(app)

from lse import bench as _bench  # noqa: E402  (lse bench, lse data fetch)

_bench.register_cli(app)

from lse import report as _report  # noqa: E402  (lse report)
from lse import status as _status  # noqa: E402  (lse status)

_report.register_cli(app)
_status.register_cli(app)

from lse import pop as _pop  # noqa: E402  (lse pop ls/show, lse gc)

_pop.register_cli(app)

from lse import launch as _launch  # noqa: E402  (lse launch, lse stop)

_launch.register_cli(app)

from lse import simulate as _simulate  # noqa: E402  (lse simulate)

_simulate.register_cli(app)

from lse import dashboard as _dashboard  # noqa: E402  (lse dashboard)

_dashboard.register_cli(app)
