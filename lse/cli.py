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
