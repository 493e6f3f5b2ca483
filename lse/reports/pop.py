"""``lse pop ls``, ``lse pop show ID`` and ``lse gc``: look into a population, collect by hand.

Thin (STYLE 11): the store does the work; this module only picks, sorts and formats rows.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from lse.errors import ConfigError, LseError
from lse.core.datasets import classes_of
from lse.core.records import IndividualRecord
from lse.store import Store

SORT_KEYS = ("id", "accuracy", "params", "flops", "born")
STATES = ("alive", "dead", "all")


def _open(pop: Path) -> Store:
    return Store(pop).open()


def rows(pop: Path, state: str = "all", sort: str = "id") -> list[IndividualRecord]:
    """Records of the population filtered by state and sorted (ascending; accuracy descending)."""
    if state not in STATES:
        raise ConfigError(f"--state {state!r} is not a state", f"valid: {', '.join(STATES)}")
    if sort not in SORT_KEYS:
        raise ConfigError(f"--sort {sort!r} is not a column", f"valid: {', '.join(SORT_KEYS)}")
    recs = _open(pop).records()
    if state != "all":
        recs = [r for r in recs if r.state == state]
    key = {
        "id": lambda r: r.id,
        "accuracy": lambda r: -(r.val_accuracy if r.val_accuracy is not None else -1.0),
        "params": lambda r: r.params if r.params is not None else -1,
        "flops": lambda r: r.flops.total if r.flops is not None else -1.0,
        "born": lambda r: (r.born_at or 0.0, r.id),
    }[sort]
    return sorted(recs, key=key)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _acc(r: IndividualRecord) -> str:
    if r.val_accuracy is None:
        return f"failed: {r.failed_reason}" if r.failed_reason else "-"
    return f"{r.val_accuracy:.4f}"


def _flops(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _state(r: IndividualRecord) -> str:
    return f"{r.state} (collected)" if r.collected else r.state


def ls(pop: Path, state: str = "all", sort: str = "id", as_json: bool = False) -> str | None:
    recs = rows(pop, state, sort)
    if as_json:
        return json.dumps([r.model_dump(mode="json") for r in recs], indent=1)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(recs)} individuals in {pop}")
    for col in ("id", "state", "val acc", "params", "FLOPs", "born (UTC)", "parent", "mutation"):
        table.add_column(col, justify="right" if col in ("val acc", "params", "FLOPs") else "left")
    for r in recs:
        table.add_row(
            r.id,
            _state(r),
            _acc(r),
            "-" if r.params is None else f"{r.params:,}",
            _flops(r.flops.total if r.flops else None),
            _when(r.born_at),
            r.parent_id or "-",
            r.mutation_name or "-",
        )
    import sys

    # Piped output (scripts, less) keeps whole rows instead of rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 220).print(table)
    return None


def lineage(recs: dict[str, IndividualRecord], individual_id: str) -> list[IndividualRecord]:
    """The individual, its parent, ... back to the initial individual (or the oldest known)."""
    out: list[IndividualRecord] = []
    seen: set[str] = set()
    cur: str | None = individual_id
    while cur is not None and cur in recs and cur not in seen:
        seen.add(cur)
        out.append(recs[cur])
        cur = recs[cur].parent_id
    return out


def show_text(pop: Path, individual_id: str) -> str:
    store = _open(pop)
    recs = {r.id: r for r in store.records()}
    rec = recs.get(individual_id)
    if rec is None:
        matches = [i for i in recs if i.startswith(individual_id)]
        if len(matches) != 1:
            raise ConfigError(
                f"no individual {individual_id!r} in {pop}"
                + (f" ({len(matches)} ids start with it)" if matches else ""),
                "list the ids with `lse pop ls --pop DIR`",
            )
        rec = recs[matches[0]]
    lines = [f"individual {rec.id}", f"  state        {_state(rec)}"]
    try:
        from lse.core.genomes import describe

        num_classes = classes_of(store.config.dataset) or 10
        lines.append(f"  architecture {describe(rec.genome, rec.dna, num_classes)[0]}")
    except (ImportError, LseError, ValueError) as e:
        lines.append(f"  architecture (cannot render: {e})")
    lines += [
        f"  val accuracy {_acc(rec)}",
        f"  learning rate {rec.dna.get('learning_rate', '-')}",
        f"  params       {'-' if rec.params is None else f'{rec.params:,}'}",
        f"  FLOPs        {_flops(rec.flops.total if rec.flops else None)}"
        + (f" (train/batch {_flops(rec.flops.train_per_batch)}, eval/batch {_flops(rec.flops.eval_per_batch)})" if rec.flops else ""),
        f"  steps        {rec.steps} ({rec.examples} examples, {rec.train_seconds or 0:.1f} s training)",
        f"  born         {_when(rec.born_at)} by {rec.worker or '-'} on {rec.host or '-'}",
        f"  killed       {_when(rec.killed_at)} by {rec.killed_by}" if rec.killed_by else "  killed       -",
        f"  mutation     {rec.mutation_name or '-'}"
        + (f" {json.dumps(rec.mutation.get('details', {}), sort_keys=True)}" if rec.mutation else ""),
    ]
    if rec.inheritance is not None:
        lines.append(f"  inherited    {rec.inheritance.kept} tensors kept, {rec.inheritance.reinitialised} reinitialised")
    chain = lineage(recs, rec.id)
    lines.append(f"  lineage      {len(chain) - 1} ancestors")
    for r in chain:
        lines.append(f"    gen {r.generation:>4}  {r.id}  {_acc(r):>8}  {r.mutation_name or 'initial'}")
    if chain and chain[-1].parent_id is not None:
        lines.append(f"    (parent {chain[-1].parent_id} has no record)")
    return "\n".join(lines)


def gc(pop: Path) -> str:
    with _open(pop) as store:
        rec = store.recover()
        rep = store.gc()
    parts = [f"collected {len(rep.collected)} dead individuals (records kept in history/)"]
    if rep.quarantined:
        parts.append(f"quarantined {len(rep.quarantined)} malformed entries")
    if rep.lost:
        parts.append(f"{rep.lost} taken by another collector")
    if rec.workers_reclaimed:
        parts.append(f"reclaimed {len(rec.workers_reclaimed)} crashed workers' folders")
    if rec.gc_finished:
        parts.append(f"finished {len(rec.gc_finished)} interrupted collections")
    return "; ".join(parts)


def register_cli(app) -> None:
    import typer

    pop_app = typer.Typer(help="Look into a population: list individuals, show one.", no_args_is_help=True)
    app.add_typer(pop_app, name="pop")

    def _fail(err: LseError) -> None:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)

    @pop_app.command("ls")
    def ls_cmd(
        pop: Path = typer.Option(..., "--pop", help="population directory"),
        state: str = typer.Option("all", "--state", help=f"one of {', '.join(STATES)}"),
        sort: str = typer.Option("id", "--sort", help=f"one of {', '.join(SORT_KEYS)} (id = birth order)"),
        as_json: bool = typer.Option(False, "--json", help="JSON list of records, for scripts"),
    ) -> None:
        """Every individual that ever lived: id, state, validation accuracy, params, FLOPs, born, parent, mutation."""
        try:
            out = ls(pop, state, sort, as_json)
        except LseError as err:
            _fail(err)
        if out is not None:
            typer.echo(out)

    @pop_app.command("show")
    def show_cmd(
        individual_id: str = typer.Argument(..., metavar="ID", help="individual id (a unique prefix is enough)"),
        pop: Path = typer.Option(..., "--pop", help="population directory"),
    ) -> None:
        """Architecture, metrics and lineage back to the initial individual."""
        try:
            typer.echo(show_text(pop, individual_id))
        except LseError as err:
            _fail(err)

    @app.command("gc")
    def gc_cmd(pop: Path = typer.Option(..., "--pop", help="population directory")) -> None:
        """Collect dead individuals by hand (weights freed, records kept) and reclaim crashed workers."""
        try:
            typer.echo(gc(pop))
        except LseError as err:
            _fail(err)
