"""``lse status``: a live view of one experiment (workers, population, progress, stop conditions).

:func:`snapshot` reads the population once into a plain :class:`Status`; :func:`render` turns
it into rich renderables; the command prints it once, or with ``--watch`` refreshes it in a
``rich.live.Live`` until Ctrl-C.  Reading never writes to the population.

Worker liveness follows the store's recovery rules: a worker on this host is alive while its
process (pid + create time) exists; a worker on another host is alive while its heartbeat
counter keeps moving on *our* clock, dead when it stood still for ``stale_after`` seconds,
and "unknown" until this viewer has watched it long enough (clocks are never compared
across hosts).  The heartbeat's age shown is the file's age as seen now, for information.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from lse.reports import curves as cv
from lse.errors import LseError


@dataclass
class WorkerStatus:
    id: str
    host: str | None
    pid: int | None
    heartbeat_age: float | None  # seconds since heartbeat.json last changed (this host's clock)
    counter: int | None
    alive: str  # "alive", "dead" or "unknown"
    births: int = 0


@dataclass
class StopCondition:
    name: str
    limit: float | None
    value: float
    unit: str

    @property
    def reached(self) -> bool:
        return self.limit is not None and self.value >= self.limit

    @property
    def fraction(self) -> float | None:
        return None if not self.limit else min(1.0, self.value / self.limit)


@dataclass
class Status:
    pop: str
    dataset: str
    selection: str
    population_size: int
    now: float
    started_at: float | None
    alive: int = 0
    dead: int = 0  # dead, weights still on disk
    collected: int = 0  # dead, only the record left
    failed: int = 0
    individuals: int = 0
    best_id: str | None = None
    best_val: float | None = None
    flops: float = 0.0
    last_hour_births: int = 0
    workers: list[WorkerStatus] = field(default_factory=list)
    stops: list[StopCondition] = field(default_factory=list)
    stop_file: bool = False
    algorithm: str = "real2017"
    generation: str | None = None  # generational algorithms: the open generation's progress

    @property
    def hours(self) -> float:
        return 0.0 if self.started_at is None else max(0.0, (self.now - self.started_at) / 3600.0)

    @property
    def per_hour(self) -> float:
        return cv.per_hour(self.individuals, self.hours)


def _liveness(store, worker_id: str) -> str:
    """The store's own judgement (the same one recovery acts on), as a word."""
    dead = store.is_dead_worker(worker_id)
    return "unknown" if dead is None else "dead" if dead else "alive"


def snapshot(store, now: float | None = None) -> Status:
    """Read the population behind ``store`` (an opened lse.store.population.Store) once."""
    from lse.core.records import is_worker_id

    from lse.reports.report import created_at

    now = time.time() if now is None else now
    cfg = store.config
    records = store.records()
    inds = [cv.from_record(r) for r in records]
    st = Status(
        pop=str(store.root), dataset=cfg.dataset, selection=cfg.selection, population_size=cfg.population_size,
        now=now, started_at=cv.experiment_start(inds, created_at(store, Path(store.root))) if inds else created_at(store, Path(store.root)),
    )
    st.individuals = len(records)
    for r, i in zip(records, inds):
        if i.alive:
            st.alive += 1
        elif getattr(r, "collected", False):
            st.collected += 1
        else:
            st.dead += 1
        st.failed += not i.has_fitness
        st.flops += i.flops
        st.last_hour_births += now - i.born_at <= 3600.0
    best = cv.top_by_validation(inds, 1)
    if best:
        st.best_id, st.best_val = best[0].id, best[0].val_accuracy
    births: dict[str, int] = {}
    for i in inds:
        births[i.worker or ""] = births.get(i.worker or "", 0) + 1
    try:
        names = sorted(os.listdir(store.paths.workers))
    except FileNotFoundError:
        names = []
    for wid in names:
        if not is_worker_id(wid):
            continue
        hb_path = store.paths.heartbeat(wid)
        hb: dict = {}
        age = None
        try:
            age = max(0.0, now - os.lstat(hb_path).st_mtime)
            hb = store.heartbeat_of(wid) or {}  # the safe read: no FIFO, no giant, bounded fields
        except OSError:
            pass
        st.workers.append(WorkerStatus(wid, hb.get("host"), hb.get("pid"), age, hb.get("counter"),
                                       _liveness(store, wid), births.get(wid, 0)))
    st.stops = [
        StopCondition("individuals", cfg.max_individuals, float(st.individuals), ""),
        StopCondition("hours", cfg.max_hours, st.hours, "h"),
        StopCondition("FLOPs", cfg.max_flops, st.flops, ""),
    ]
    if cfg.finish_minutes:  # --finish: evolution stops earlier; the rest of the hours retrain the best
        st.stops.insert(2, StopCondition("evolution (--finish)", cfg.evolve_hours, st.hours, "h"))
    st.stop_file = bool(store.stop_requested())
    st.algorithm = cfg.algorithm.name
    if store.paths.generations.is_dir():
        st.generation = _generation_line(store)
    return st


def _generation_line(store) -> str | None:
    """"generation 7: 12/20 children, 3 claimed (open)" for the highest generation, read-only."""
    from lse.algorithms import make_algorithm
    from lse.store.generations import Generations

    try:
        algo = make_algorithm(store.config)  # its slot counts stand in for an unusable generation.json
        rows = Generations(store, slots=algo.slots(1), initial_slots=algo.slots(0)).status()
    except Exception as e:  # noqa: BLE001 - status must show something, never crash
        return f"(unreadable: {str(e).splitlines()[0]})"
    if not rows:
        return None
    r = rows[-1]
    return (f"generation {r.generation}: {r.filled}/{r.slots} children, {r.claimed} claimed ({r.state}); "
            f"{len(rows) - 1} closed before it")


def _safe(text: object) -> str:
    """Text read from the population, for a rich cell: terminal escapes spelt out, markup inert
    (a host name "[link=…]" or an OSC sequence in a heartbeat must not reach the terminal)."""
    from rich.markup import escape

    from lse.core.text import terminal_safe

    return escape(terminal_safe(text, limit=200))


def _age(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def render(st: Status):
    """rich renderables of a :class:`Status`."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    from lse.reports.report import duration

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("population", st.pop)
    head.add_row("experiment", f"{st.dataset}, algorithm {st.algorithm}, {st.selection} selection, "
                 f"population {st.population_size}")
    if st.generation:
        head.add_row("generations", _safe(st.generation))
    head.add_row("individuals", f"{st.individuals} trained: {st.alive} alive, {st.dead} dead, "
                 f"{st.collected} collected; {st.failed} failed training")
    head.add_row("best validation", "-" if st.best_val is None else f"{100 * st.best_val:.2f}%  ({st.best_id})")
    head.add_row("FLOPs spent", f"{st.flops:.3g}")
    head.add_row("since start", duration(st.hours))
    head.add_row("individuals / hour", f"{st.per_hour:.1f} overall, {st.last_hour_births} in the last hour")

    stops = Table(title="stop conditions", title_justify="left", expand=False)
    for c in ("condition", "now", "limit", ""):
        stops.add_column(c)
    for c in st.stops:
        fmt = duration if c.unit == "h" else (lambda v: str(int(v))) if c.name == "individuals" else (lambda v: f"{v:.3g}")
        val = fmt(c.value)
        lim = "-" if c.limit is None else fmt(c.limit)
        frac = "" if c.fraction is None else ("[red]reached[/]" if c.reached else f"{100 * c.fraction:.0f}%")
        stops.add_row(c.name, val, lim, frac)
    stops.add_row("STOP file", "[red]present[/]" if st.stop_file else "absent", "", "")

    workers = Table(title=f"workers ({len(st.workers)})", title_justify="left")
    for c in ("worker", "host", "pid", "heartbeat age", "counter", "state", "births"):
        workers.add_column(c)
    colour = {"alive": "green", "dead": "red", "unknown": "yellow"}
    for w in st.workers:
        workers.add_row(w.id, _safe(w.host or "-"), str(w.pid or "-"), _age(w.heartbeat_age), str(w.counter or "-"),
                        f"[{colour[w.alive]}]{w.alive}[/]", str(w.births))
    return Panel(Group(head, "", stops, "", workers), title="lse status", subtitle=time.strftime("%H:%M:%S"))


def show(pop: str | os.PathLike, watch: bool = False, every: float = 5.0, console=None) -> Status:
    """Print the status once, or refresh it every ``every`` seconds until Ctrl-C."""
    from rich.console import Console
    from rich.live import Live

    from lse.store.population import Store

    console = console or Console()
    # One Store: it remembers heartbeat observations between refreshes.  Read-only: status
    # describes the population, it never moves (quarantines) anything in it.
    store = Store(pop, read_only=True).open()
    st = snapshot(store)
    if not watch:
        console.print(render(st))
        return st
    try:
        with Live(render(st), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(every)
                st = snapshot(store)
                live.update(render(st))
    except KeyboardInterrupt:
        pass
    return st


def register_cli(app) -> None:
    import typer

    @app.command("status")
    def status_cmd(
        pop: Path = typer.Option(..., "--pop", help="population directory"),
        watch: bool = typer.Option(False, "--watch", help="refresh until Ctrl-C"),
        every: float = typer.Option(5.0, "--every", min=0.5, help="seconds between refreshes with --watch"),
    ) -> None:
        """Workers and heartbeats, individuals per state, best validation accuracy, FLOPs, stop conditions."""
        try:
            show(pop, watch=watch, every=every)
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
