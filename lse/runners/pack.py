"""``lse bench --pack``: how many children one device trains per hour with K trainer processes
on it, K = 1, 2, 4 ... (with or without CUDA MPS).

Each process does what a worker's trainer does for one child: build the network from its DNA,
inherit its parent's weights (held in memory: the store's reads are not measured here, the real
run in docs/GPU.md is), train ``steps`` steps with the real trainer, evaluate on the validation
split, and copy the weights back to the host.  The children cycle through the three canonical
individuals of ``lse bench`` (no convolution; 3 convolutions; 10 convolutions with skips), the
sizes the hour preset's populations pass through.

All processes are started once and wait; for each K, the first K are sent a window of
``seconds`` and each trains children until the first one that ends after the window closes.  A
process's rate is its children over its own elapsed time; the device's is their sum.  The
processes that finish first leave the last ones a slightly emptier device, so K > 1 is
slightly flattered (by at most one child per process).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass

PACK_INDIVIDUALS = ("initial", "3-conv", "10-conv+skips")


@dataclass
class PackRow:
    workload: str
    k: int
    mps: bool
    steps: int
    children: int
    children_per_hour: float  # summed over the K processes
    steps_per_second: float  # training steps of all K processes per wall second
    seconds: float  # the longest process's elapsed time

    def to_dict(self) -> dict:
        return asdict(self)


def _child_loop(rank: int, conn, args: dict) -> None:
    """One trainer process: load the data set on the device once, then run windows on request."""
    import torch

    from lse.nn.build import build_model
    from lse.nn.data import load_dataset
    from lse.nn.inherit import inherit_weights
    from lse.nn.train import set_threads, train
    from lse.runners.bench import canonical_dnas

    set_threads(1)
    dev = torch.device(args["device"])
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index or 0)  # set_device needs an index
        torch.cuda.set_device(dev)
    ds = load_dataset(args["dataset"], args["data_dir"], args["validation_size"], 0, dev)
    names = args["individuals"]
    dnas = {n: d for n, d in canonical_dnas(ds.input_shape[0]).items() if n in names}
    parents: dict[str, dict] = {}
    conn.send(("ready", rank))
    i = 0
    while True:
        msg = conn.recv()
        if msg is None:
            break
        seconds, steps, only = msg
        todo = [n for n in names if n in only] if only else names
        children = steps_done = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            name = todo[(rank + i) % len(todo)]
            i += 1
            torch.manual_seed(rank * 1000 + i)
            model = build_model(dnas[name], ds.input_shape, ds.num_classes)
            if name in parents:
                inherit_weights(model, parents[name], None)
            r = train(model, ds, learning_rate=0.05, steps=steps, seed=rank * 1000 + i, device=dev,
                      lr_schedule=args["lr_schedule"], precision=args["precision"], cuda_graph=args["cuda_graph"],
                      eval_batch_size=1000)
            parents[name] = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
            children += 1
            steps_done += r.steps
            if time.perf_counter() >= deadline:
                break
        conn.send((children, steps_done, time.perf_counter() - t0))


def run_pack(ks: list[int], *, steps: int = 500, seconds: float = 5.0, device: str = "cuda", mps: bool = False,
             dataset: str = "fashion-mnist", data_dir: str | None = None, validation_size: int = 5000,
             precision: str = "auto", cuda_graph: bool = True, lr_schedule: str = "cosine",
             individuals: tuple[str, ...] = PACK_INDIVIDUALS, echo=print,
             windows: list[tuple[str, int, tuple[str, ...] | None, list[int]]] | None = None) -> list[PackRow]:
    """Rows for every K in ``ks``: children of ``steps`` steps cycling through ``individuals``.
    ``windows`` instead: (workload label, steps, individuals or None for all, Ks) each, measured
    with the same processes.  With ``mps`` an MPS daemon is started first (lse.runners.mps) and
    stopped at the end, after checking that its server really has clients."""
    windows = windows or [("mix" if len(individuals) > 1 else individuals[0], steps, None, ks)]
    ks = sorted({k for w in windows for k in w[3]})
    daemon = None
    if mps:
        from lse.runners.mps import start_mps

        daemon = start_mps()
    saved = dict(os.environ)
    if daemon is not None:
        os.environ.update(daemon.env())  # inherited by the spawned processes
    ctx = mp.get_context("spawn")
    n = max(ks)
    args = dict(device=device, dataset=dataset, data_dir=data_dir, validation_size=validation_size,
                precision=precision, cuda_graph=cuda_graph, lr_schedule=lr_schedule, individuals=list(individuals))
    pipes, procs = [], []
    rows: list[PackRow] = []
    try:
        for rank in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_child_loop, args=(rank, child, args), daemon=True)
            p.start()
            pipes.append(parent)
            procs.append(p)
        for c in pipes:
            if not c.poll(300):
                raise RuntimeError("a pack process did not start within 300 s")
            c.recv()
        # warm-up, not measured: every process trains one child of each individual (first-time
        # costs: CUDA context, cuDNN handles, kernel selection)
        for _, st, only, _ks in windows:
            for _ in (only or individuals):
                for c in pipes:
                    c.send((0.0, st, only))
                for c in pipes:
                    _recv(c)
        if daemon is not None:
            servers = daemon.server_pids()
            echo(f"MPS: {len(servers)} server(s) with clients: {servers}")
            if not servers:
                raise RuntimeError("MPS daemon started but no client connected to a server")
        for workload, st, only, wks in windows:
            for k in wks:
                for c in pipes[:k]:
                    c.send((seconds, st, only))
                results = [_recv(c) for c in pipes[:k]]
                children = sum(r[0] for r in results)
                rate = sum(r[0] / r[2] for r in results) * 3600
                sps = sum(r[1] / r[2] for r in results)
                row = PackRow(workload, k, mps, st, children, rate, sps, max(r[2] for r in results))
                echo(f"{workload} K={k:>2} mps={'yes' if mps else 'no ':3} steps={st:>5}: {children:>5} children, "
                     f"{rate:>9,.0f} per device-hour, {sps:>9,.0f} steps/s")
                rows.append(row)
    finally:
        for c in pipes:
            try:
                c.send(None)
            except OSError:
                pass
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        os.environ.clear()
        os.environ.update(saved)
        if daemon is not None:
            daemon.stop()
    return rows


def _recv(conn, timeout: float = 180.0):
    """A process's answer; a process that died or hangs ends the benchmark instead of hanging it."""
    if not conn.poll(timeout):
        raise RuntimeError(f"a pack process gave no answer within {timeout:.0f} s")
    return conn.recv()


def format_pack(rows: list[PackRow]) -> str:
    lines = ["| workload | K | MPS | steps per child | children | per device-hour | training steps/s (all K) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.workload} | {r.k} | {'yes' if r.mps else 'no'} | {r.steps:,} | {r.children:,} | "
                     f"{r.children_per_hour:,.0f} | {r.steps_per_second:,.0f} |")
    return "\n".join(lines)
