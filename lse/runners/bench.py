"""``lse bench``: the project's trainer against a minimal hand-written PyTorch loop, in the
same run, on the same in-memory tensors; plus the per-individual overhead.

A benchmark is a program, not a test (STYLE.md 12): it prints figures side by side with their
baseline and asserts nothing.  Targets (issue 3): trainer >= 0.95x the minimal loop on CPU;
per-individual overhead (load the parent's weights, build, inherit, first step) under 1% of a
25,600-step training of the 3-convolution net.

Canonical individuals: the initial DNA (no convolution, section 3.3); a 3-convolution net; a
10-convolution net with 3 skips.  They are grown with the real mutations and built with
:func:`lse.nn.build.build_model`; while that module does not exist yet, equivalent hand-written
modules stand in (the table says which).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lse.nn.data import Dataset, load_dataset
from lse.nn.train import resolve_device, set_threads, train

PAPER_STEPS = 25_600


@dataclass
class Individual:
    name: str
    make: Callable[[], nn.Module]  # a fresh model, same init for a given torch seed
    dna: object | None = None  # lse.core.dna.DNA when built from DNA
    built_from: str = "dna"


@dataclass
class BenchRow:
    name: str
    built_from: str
    params: int
    minimal_steps_s: float
    trainer_steps_s: float  # augment off: the same work as the minimal loop
    trainer_aug_steps_s: float  # augment on (the setting evolution uses)
    ratio: float  # trainer / minimal
    overhead_ms: dict  # load, build, inherit, first_step, total
    eval_ms: float  # one validation pass
    overhead_share: float  # total overhead / time of a 25,600-step training


# ---------------------------------------------------------------------------------------------
# Canonical individuals


def _shaped(dna, channels: list[int], strides: list[int]):
    """``dna`` with its backbone convolutions given these channels and log2-strides, all
    activations batch-norm + ReLU (mutations insert them with the input's channel count)."""
    from lse.core.dna import DNA

    d = dna.model_dump(mode="python")
    convs = [e.id for e in dna.backbone_edges() if e.kind == "conv"]
    for eid, c, s in zip(convs, channels, strides):
        e = next(x for x in d["edges"] if x["id"] == eid)
        e["out_channels"], e["stride_log2"] = float(c), float(s)
    for v in d["vertices"]:
        if v["id"] not in (d["input_id"], d["output_id"]):
            v["activation"] = "bn_relu"
    return DNA.model_validate(d)


def canonical_dnas(input_channels: int) -> dict:
    """name -> DNA: initial; 3 convolutions (16/32/64, two of stride 2); 10 convolutions
    (16..64, two of stride 2) with 3 identity skips.  Grown with the real mutations."""
    from lse.core.dna import initial_dna
    from lse.core.mutations import add_skip, insert_convolution

    rng = random.Random(0)
    init = initial_dna(0.1, input_channels)
    three = init
    for _ in range(3):
        three, _ = insert_convolution(three, rng)
    three = _shaped(three, [16, 32, 64], [0, 1, 1])
    ten = init
    for _ in range(10):
        ten, _ = insert_convolution(ten, rng)
    ten = _shaped(ten, [16] * 4 + [32] * 3 + [64] * 3, [0, 0, 0, 0, 1, 0, 0, 1, 0, 0])
    for _ in range(3):
        ten, _ = add_skip(ten, rng)
    return {"initial": init, "3-conv": three, "10-conv+skips": ten}


class _Fallback(nn.Module):
    """Stand-in for lse.nn.build while it does not exist: conv-bn-relu stack, global average
    pooling, linear classifier; skips add the input of every third block to its output."""

    def __init__(self, in_ch: int, classes: int, channels: list[int], strides: list[int], skips: bool):
        super().__init__()
        layers, c = [], in_ch
        for co, s in zip(channels, strides):
            layers.append(nn.Sequential(nn.Conv2d(c, co, 3, stride=2**s, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU()))
            c = co
        self.blocks = nn.ModuleList(layers)
        self.skips = skips
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            y = b(x)
            x = y + x if self.skips and i % 3 == 2 and y.shape == x.shape else y
        return self.fc(x.mean((2, 3)))


def canonical_individuals(input_shape: tuple[int, int, int], num_classes: int) -> list[Individual]:
    try:
        from lse.nn.build import build_model
    except ImportError:
        build_model = None
    if build_model is not None:
        dnas = canonical_dnas(input_shape[0])
        return [Individual(n, (lambda d=d: build_model(d, input_shape, num_classes)), d) for n, d in dnas.items()]
    c = input_shape[0]
    specs = {"initial": ([], []), "3-conv": ([16, 32, 64], [0, 1, 1]),
             "10-conv+skips": ([16] * 4 + [32] * 3 + [64] * 3, [0, 0, 0, 0, 1, 0, 0, 1, 0, 0])}
    return [Individual(n, (lambda ch=ch, st=st, n=n: _Fallback(c, num_classes, ch, st, n.endswith("skips"))),
                       None, "stand-in (lse.nn.build missing)") for n, (ch, st) in specs.items()]


# ---------------------------------------------------------------------------------------------
# The baseline: a minimal hand-written loop over the same in-memory tensors


def minimal_loop(model: nn.Module, ds: Dataset, steps: int, lr: float, batch_size: int = 50, seed: int = 0,
                 host: Dataset | None = None) -> float:
    """What one writes without thinking about speed: random indices, float + normalise, fp32
    eager NCHW, zero_grad/backward/step.  Returns seconds for ``steps`` steps.  With ``host``
    (a CPU copy of the data), each batch is gathered in host memory and moved to the model's
    device every step: the "typical loop" a GPU trainer is compared with."""
    dev = ds.train_x.device
    src = host or ds
    model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor(ds.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(ds.std, device=dev).view(1, -1, 1, 1)
    g = torch.Generator(device=src.train_x.device).manual_seed(seed)
    n = src.train_x.shape[0]
    _sync(dev)
    now = clock()
    t = now()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), device=src.train_x.device, generator=g)
        x = (src.train_x[idx].to(dev).float() - mean) / std
        loss = F.cross_entropy(model(x), src.train_y[idx].to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(dev)
    return now() - t


def clock() -> Callable[[], float]:
    """The clock for throughput: with one torch thread, the CPU time of this thread, which
    other processes on a shared machine do not inflate (wall time did, by up to 2x, on the
    2-core development machines); otherwise wall time."""
    return time.thread_time if torch.get_num_threads() == 1 and not torch.cuda.is_initialized() else time.perf_counter


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ---------------------------------------------------------------------------------------------
# Measurements


def _fresh(ind: Individual, dev: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return ind.make().to(dev)


def _throughput(ind: Individual, ds: Dataset, steps: int, repeats: int, host: Dataset | None,
                cuda_graph: bool | None, precision: str = "auto") -> tuple[float, float, float]:
    """Best-of-``repeats`` steps/s for (minimal, trainer, trainer+augment), interleaved so
    that load from other processes hits all three alike."""
    dev = ds.train_x.device
    lr = 0.01
    warm = max(3, steps // 20)
    best = [0.0, 0.0, 0.0]
    for _ in range(repeats):
        m = _fresh(ind, dev)
        minimal_loop(m, ds, warm, lr, host=host)
        best[0] = max(best[0], steps / minimal_loop(m, ds, steps, lr, host=host))
        for k, aug in ((1, False), (2, True)):
            m = _fresh(ind, dev)
            _train_only(m, ds, warm, lr, aug, cuda_graph, precision=precision)
            r = _train_only(m, ds, steps, lr, aug, cuda_graph, precision=precision)
            best[k] = max(best[k], steps / r)
    return best[0], best[1], best[2]


def _train_only(m: nn.Module, ds: Dataset, steps: int, lr: float, aug: bool, cuda_graph: bool | None = None,
                **train_kw) -> float:
    """Seconds of the training loop of :func:`lse.nn.train.train` (evaluation excluded: it is the
    same for both and reported on its own)."""
    empty_val = Dataset(ds.name, ds.train_x, ds.train_y, ds.val_x[:0], ds.val_y[:0], ds.test_x[:0], ds.test_y[:0],
                        ds.input_shape, ds.num_classes, ds.flip, ds.split, ds.mean, ds.std, ds.source, ds.device)
    now = clock()
    t = now()
    train(m, empty_val, learning_rate=lr, steps=steps, seed=0, augment=aug, cuda_graph=cuda_graph, **train_kw)
    return now() - t


def _overhead(ind: Individual, ds: Dataset, cuda_graph: bool | None = None) -> tuple[dict, float]:
    """Milliseconds per individual: load the parent's weights from disk (safetensors, as the
    store writes them), build the child, inherit, the first training step; and one evaluation."""
    dev = ds.train_x.device
    parent = _fresh(ind, dev)
    state = {k: v.detach().cpu().contiguous() for k, v in parent.state_dict().items()}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        try:
            from safetensors.torch import load_file, save_file

            save_file(state, str(path))
            t = time.perf_counter()
            loaded = load_file(str(path), device=str(dev))
        except ImportError:  # pragma: no cover
            torch.save(state, path)
            t = time.perf_counter()
            loaded = torch.load(path, map_location=dev, weights_only=True)
        out["load"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    child = ind.make().to(dev)
    out["build"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    try:
        from lse.nn.inherit import inherit_weights

        inherit_weights(child, loaded, None)
    except ImportError:
        child.load_state_dict(loaded)
    out["inherit"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    _train_only(child, ds, 1, 0.01, True, cuda_graph)
    out["first_step"] = (time.perf_counter() - t) * 1e3
    out["total"] = sum(out.values())
    t = time.perf_counter()
    from lse.nn.train import evaluate

    evaluate(child, ds.val_x, ds.val_y, 1000, dataset=ds)
    _sync(dev)
    return out, (time.perf_counter() - t) * 1e3


def run_bench(
    steps: int = 200,
    device: str = "cpu",
    dataset: str | None = None,
    data_dir: str | None = None,
    threads: int | None = None,
    repeats: int = 3,
    only: list[str] | None = None,
    synthetic_size: int = 60_000,
    validation_size: int = 5000,
    cuda_graph: bool | None = None,
    precision: str = "auto",
) -> list[BenchRow]:
    """Measure every canonical individual (``only``: a subset by name).  Without ``dataset``
    a synthetic Fashion-MNIST-shaped set (55,000 training images) is generated, so it runs
    offline.  On CUDA the minimal loop is the "typical" one: batches gathered in host memory
    and moved every step, eager fp32 (the trainer keeps the data on the GPU)."""
    ds, host = bench_data(device, dataset, data_dir, threads, synthetic_size, validation_size)
    rows = []
    for ind in canonical_individuals(ds.input_shape, ds.num_classes):
        if only and ind.name not in only:
            continue
        params = sum(p.numel() for p in ind.make().parameters())
        mini, tr, tr_aug = _throughput(ind, ds, steps, repeats, host, cuda_graph, precision)
        over, eval_ms = _overhead(ind, ds, cuda_graph)
        full_ms = PAPER_STEPS / tr_aug * 1e3
        rows.append(BenchRow(ind.name, ind.built_from, params, mini, tr, tr_aug, tr / mini, over, eval_ms,
                             over["total"] / full_ms))
    return rows


def bench_data(device: str = "cpu", dataset: str | None = None, data_dir: str | None = None, threads: int | None = None,
               synthetic_size: int = 60_000, validation_size: int = 5000) -> tuple[Dataset, Dataset | None]:
    """The data set on the device (synthetic Fashion-MNIST-shaped without ``dataset``) and, on
    CUDA, a host copy for the host-fed minimal loop."""
    if threads:
        set_threads(threads)
    dev = resolve_device(device)
    if dataset is None:
        from lse.nn.synthetic import write_synthetic

        tmp = tempfile.mkdtemp(prefix="lse-bench-")
        write_synthetic(tmp, "idx", n_train=synthetic_size, n_test=1_000, seed=0)
        ds = load_dataset("fashion-mnist", tmp, validation_size, 0, dev)
        shutil.rmtree(tmp, ignore_errors=True)  # in memory now
    else:
        ds = load_dataset(dataset, data_dir, validation_size, 0, dev)
    host = ds.to("cpu") if dev.type == "cuda" else None
    return ds, host


#: trainer settings ``lse bench --variants`` measures beside the minimal loop (label, train() options)
VARIANTS: tuple[tuple[str, dict], ...] = (
    ("eager fp32", dict(cuda_graph=False, precision="fp32", augment=False)),
    ("eager bf16", dict(cuda_graph=False, precision="bf16", augment=False)),
    ("graph fp32", dict(cuda_graph=True, precision="fp32", augment=False)),
    ("graph bf16", dict(cuda_graph=True, precision="bf16", augment=False)),
    ("graph fp32 +aug", dict(cuda_graph=True, precision="fp32", augment=True)),
    ("graph fp32 +aug +cosine", dict(cuda_graph=True, precision="fp32", augment=True, lr_schedule="cosine")),
    ("graph bf16 +aug +cosine", dict(cuda_graph=True, precision="bf16", augment=True, lr_schedule="cosine")),
)


def run_variants(ds: Dataset, host: Dataset | None, steps: int, repeats: int = 2, only: list[str] | None = None,
                 variants=VARIANTS, graph_steps: int | None = None, echo=None) -> list[dict]:
    """Steps/s of the minimal loop and of each trainer variant, per canonical individual: best of
    ``repeats`` interleaved runs (graphed variants run ``graph_steps``, default ``steps``, so that
    each timed run lasts long enough).  One dict per individual: name, params, minimal, then one
    key per variant label."""
    out = []
    lr = 0.01
    for ind in canonical_individuals(ds.input_shape, ds.num_classes):
        if only and ind.name not in only:
            continue
        row = {"individual": ind.name, "params": sum(p.numel() for p in ind.make().parameters()), "minimal": 0.0}
        for _ in range(repeats):
            m = _fresh(ind, ds.train_x.device)
            minimal_loop(m, ds, max(3, steps // 20), lr, host=host)
            row["minimal"] = max(row["minimal"], steps / minimal_loop(m, ds, steps, lr, host=host))
            for label, kw in variants:
                kw = dict(kw)
                aug = kw.pop("augment", False)
                n = graph_steps if (graph_steps and kw.get("cuda_graph")) else steps
                m = _fresh(ind, ds.train_x.device)
                _train_only(m, ds, max(3, n // 20), lr, aug, **kw)
                row[label] = max(row.get(label, 0.0), n / _train_only(m, ds, n, lr, aug, **kw))
        if echo:
            echo("  ".join(f"{k}={v:,.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        out.append(row)
    return out


def format_variants(rows: list[dict]) -> str:
    labels = [k for k in rows[0] if k not in ("individual", "params")] if rows else []
    lines = ["| individual | params | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for r in rows:
        cells = [f"{r[k]:,.0f}" + ("" if k == "minimal" else f" ({r[k] / r['minimal']:.2f}x)") for k in labels]
        lines.append(f"| {r['individual']} | {r['params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(rows: list[BenchRow], header: str = "") -> str:
    lines = [header] if header else []
    lines.append(f"{'individual':<15}{'params':>9}{'minimal/s':>11}{'trainer/s':>11}{'ratio':>7}{'+aug/s':>9}"
                 f"{'load':>7}{'build':>7}{'inherit':>8}{'1st step':>9}{'total ms':>9}{'of 25.6k':>9}{'eval ms':>9}")
    for r in rows:
        o = r.overhead_ms
        lines.append(f"{r.name:<15}{r.params:>9,}{r.minimal_steps_s:>11.1f}{r.trainer_steps_s:>11.1f}{r.ratio:>7.2f}"
                     f"{r.trainer_aug_steps_s:>9.1f}{o['load']:>7.2f}{o['build']:>7.2f}{o['inherit']:>8.2f}"
                     f"{o['first_step']:>9.2f}{o['total']:>9.2f}{r.overhead_share:>9.3%}{r.eval_ms:>9.1f}")
    if any(r.built_from != "dna" for r in rows):
        lines.append("models: hand-written stand-ins (lse.nn.build not available yet)")
    lines.append(f"clock: {'CPU time of this thread (1 torch thread)' if clock() is time.thread_time else 'wall'}; "
                 "steps/s: best of interleaved repeats; ratio = trainer / minimal loop (both without augmentation); "
                 "'of 25.6k' = overhead as a share of a 25,600-step training with augmentation")
    return "\n".join(lines)


def register_cli(app) -> None:
    """`lse bench` and `lse data fetch NAME` (thin: parse, call, print)."""
    import typer

    from lse.errors import LseError

    @app.command("bench")
    def bench_cmd(
        steps: int = typer.Option(200, help="training steps timed per individual and loop"),
        device: str = typer.Option("auto", help="auto | cpu | cuda (auto: cuda when available, else cpu)"),
        dataset: str = typer.Option(None, help="data set name; default: synthetic (runs offline)"),
        data_dir: str = typer.Option(None, help="folder holding the data set's standard files"),
        threads: int = typer.Option(None, help="torch intra-op threads (default: torch's choice)"),
        repeats: int = typer.Option(3, help="interleaved repeats; the best is reported"),
        only: list[str] = typer.Option(None, help="measure only these individuals (initial, 3-conv, 10-conv+skips)"),
        cuda_graph: bool = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="CUDA only: replay the training step from a CUDA graph (default: on)"),
        precision: str = typer.Option("auto", help="CUDA arithmetic: auto, fp32 or bf16"),
        pack: str = typer.Option(None, help="K1,K2,...: instead, children per device-hour with K trainer processes on the device"),
        mps: bool = typer.Option(False, help="with --pack on CUDA: run the processes under an MPS daemon"),
        pack_seconds: float = typer.Option(5.0, help="with --pack: seconds measured per K"),
    ) -> None:
        """Trainer vs a minimal PyTorch loop, and per-individual overhead, on canonical DNAs."""
        if pack:
            from lse.runners.pack import format_pack, run_pack

            try:
                ks = sorted({int(k) for k in pack.split(",")})
                if not ks or ks[0] < 1:
                    raise ValueError
            except ValueError:
                typer.echo(f"error: --pack {pack!r}: give worker counts like 1,2,4,8", err=True)
                raise typer.Exit(2)
            try:
                rows = run_pack(ks, steps=steps, seconds=pack_seconds, device=str(resolve_device(device)), mps=mps,
                                dataset=dataset or "fashion-mnist", data_dir=data_dir, precision=precision,
                                cuda_graph=cuda_graph is not False, echo=typer.echo)
            except LseError as e:
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(2)
            typer.echo(format_pack(rows))
            return
        try:
            rows = run_bench(steps, device, dataset, data_dir, threads, repeats, only, cuda_graph=cuda_graph,
                             precision=precision)
        except LseError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        dev = resolve_device(device)
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        baseline = ("minimal = typical loop: host batches moved each step, fp32 eager"
                    if dev.type == "cuda" else "minimal = hand-written loop on the same in-memory tensors")
        typer.echo(format_table(rows, f"lse bench: {dataset or 'synthetic 28x28x1'}, {steps} steps, batch 50, {name}, "
                                      f"torch {torch.__version__}{'' if dev.type != 'cuda' else ', eager' if cuda_graph is False else ', CUDA graph'}; {baseline}"))

    data_app = typer.Typer(help="Data sets: fetch the official files.", no_args_is_help=True)

    @data_app.command("fetch")
    def fetch_cmd(
        name: str = typer.Argument(..., help="cifar10, cifar100, mnist or fashion-mnist"),
        data_dir: str = typer.Option(None, help="where to put it (default: $LSE_DATA, else ~/.local/share/lse/data)"),
    ) -> None:
        """Download a data set from its official source (needs internet) and check its MD5s."""
        from lse.nn.data import fetch_dataset

        try:
            dest = fetch_dataset(name, data_dir)
        except LseError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(f"{name} is in {dest}; use --data-dir {dest} (or set LSE_DATA)")

    app.add_typer(data_app, name="data")
