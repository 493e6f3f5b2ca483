"""The ``lse`` command as a whole: what every subcommand promises alike."""

from __future__ import annotations

import typer

from lse.cli import app


def _commands(cmd, path: str = "lse"):
    yield path, cmd
    if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
        for name, sub in cmd.commands.items():
            yield from _commands(sub, f"{path} {name}")


def test_every_device_option_defaults_to_auto():
    """A GPU box trains and evaluates on its GPU without being told (auto: cuda when available,
    else cpu); before, `lse reference` trained the comparison CNN on the CPU beside a GPU."""
    found = {}
    for path, cmd in _commands(typer.main.get_command(app)):
        for p in cmd.params:
            if "--device" in p.opts:
                found[path] = p.default
    assert {"lse launch", "lse reference", "lse report", "lse bench"} <= found.keys(), found
    assert {k: v for k, v in found.items() if v != "auto"} == {}
