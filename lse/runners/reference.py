"""``lse reference``: train the hand-designed anchor (:class:`lse.nn.reference.ReferenceCNN`) on an
experiment's data, with the experiment's trainer, for a wall-time budget, and record its curve in
``POP/reference/<name>.json`` for `lse report` to draw beside the evolution's.

Same data: the experiment's data set, validation split (size and seed) and augmentation.  Same
trainer: :func:`lse.nn.train.train` (SGD with the experiment's momentum, weight decay and batch
size), called in chunks; each chunk ends with the validation pass every individual gets, which
gives the curve's points.  The clock counts training and validation -- what an experiment's wall
time is spent on -- and not the test pass of each point, which is the report's work (the
evolution's test accuracies are computed after the fact too).  FLOPs are counted as the
experiment counts its own (section 3.5).

The file is rewritten (private file, then one rename) after every point, so a killed run keeps
the points it made and a report drawn while it runs shows them.  Only this command writes under
``reference/``; workers never read it, so the anchor cannot influence the search.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from lse.core.reference import ReferenceCurve, ReferencePoint, is_reference_name
from lse.errors import ConfigError, LseError
from lse.store.references import write_reference

#: points a curve aims for: enough for a smooth line, few enough that test passes stay cheap
POINTS = 30
#: steps of the first chunk, which measures the speed the later chunks are sized from
FIRST_CHUNK = 20


def default_budget_seconds(store) -> float:
    """The experiment's wall time so far, as `lse report` measures it: from its time zero
    (:func:`lse.reports.curves.experiment_start`) to its latest birth."""
    from lse.reports import curves as cv
    from lse.reports.report import created_at

    inds = [cv.from_record(r) for r in store.records()]
    if not inds:
        raise ConfigError("the experiment has no births yet, so its wall time is unknown",
                          "give the anchor's budget with --minutes")
    wall = max(i.born_at for i in inds) - cv.experiment_start(inds, created_at(store, store.paths.root))
    if wall <= 0:
        raise ConfigError("the experiment's births span no wall time yet", "give the anchor's budget with --minutes")
    return wall


def run_reference(
    pop: str | os.PathLike,
    *,
    minutes: float | None = None,
    name: str = "textbook-cnn",
    learning_rate: float | None = None,
    threads: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | None = None,
    points: int = POINTS,
    echo=print,
) -> ReferenceCurve:
    """Train the anchor on ``pop``'s data for ``minutes`` (default: the experiment's wall time so
    far) and write its curve; returns the finished curve."""
    import torch

    from lse.nn.data import load_dataset
    from lse.nn.flops import measure_flops
    from lse.nn.reference import REFERENCE_LEARNING_RATE, ReferenceCNN
    from lse.nn.train import evaluate, resolve_device, set_threads, train
    from lse.store import Store

    if not is_reference_name(name):
        raise ConfigError(f"--name {name!r} is not a file name", "use letters, digits, '-' and '_' (at most 80)")
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"--minutes must be positive, got {minutes}", "give the anchor's wall time in minutes")
    if points < 2:
        raise ConfigError(f"--points must be at least 2, got {points}", "give how many points the curve has")
    store = Store(pop).open()  # StoreError saying what to do when pop is not a population
    cfg = store.config
    if cfg.dataset == "encoded":
        raise ConfigError("the anchor trains on images; this experiment's data are codes of an encoder",
                          "run lse reference on the experiment that made the codes")
    budget = minutes * 60 if minutes is not None else default_budget_seconds(store)
    lr = REFERENCE_LEARNING_RATE if learning_rate is None else learning_rate
    if not lr > 0:
        raise ConfigError(f"--learning-rate must be positive, got {lr}", "give a positive learning rate")
    threads = threads or len(os.sched_getaffinity(0))
    set_threads(threads)
    dev = resolve_device(device)
    ds = load_dataset(cfg.dataset, data_dir or cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed,
                      device=dev, flip=cfg.flip, image=cfg.image_options())
    torch.manual_seed(seed)
    model = ReferenceCNN(tuple(ds.input_shape), ds.num_classes).to(dev)
    with torch.device("meta"):
        ghost = ReferenceCNN(tuple(ds.input_shape), ds.num_classes)
    f_train, f_eval = measure_flops(ghost, tuple(ds.input_shape), ds.num_classes, cfg.batch_size,
                                    cfg.eval_batch_size, device="meta")
    val_batches = -(-ds.val_x.shape[0] // cfg.eval_batch_size)
    path = store.paths.reference_curve(name)
    curve = ReferenceCurve(
        name=name, architecture="conv5x5(32) pool2, conv5x5(64) pool2, FC(256), FC(classes); ReLU, no batch norm",
        params=sum(p.numel() for p in model.parameters()), learning_rate=lr, batch_size=cfg.batch_size, seed=seed,
        threads=threads, device=str(dev), host=socket.gethostname(), budget_seconds=budget, started_at=time.time(),
        done=False,
    )
    echo(f"reference {name}: {curve.params:,} parameters, lr {lr}, {threads} thread(s) on {dev}, "
         f"{budget / 60:.1f} min -> {path}")
    spent, steps, flops, chunk, k = 0.0, 0, 0.0, FIRST_CHUNK, 0
    while spent < budget:
        t0 = time.perf_counter()
        res = train(model, ds, learning_rate=lr, steps=chunk, batch_size=cfg.batch_size, momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay, seed=seed * 1_000_003 + k, augment=cfg.augment,
                    eval_batch_size=cfg.eval_batch_size)
        spent += time.perf_counter() - t0
        if res.failed_reason:
            raise LseError(f"the reference diverged after {steps + res.steps} steps ({res.failed_reason})",
                           "give a smaller --learning-rate")
        steps, flops, k = steps + res.steps, flops + f_train * res.steps + f_eval * val_batches, k + 1
        test = evaluate(model, ds.test_x, ds.test_y, cfg.eval_batch_size, dataset=ds)
        point = ReferencePoint(seconds=spent, steps=steps, flops=flops, val_accuracy=res.val_accuracy,
                               test_accuracy=test)
        curve = curve.model_copy(update={"points": [*curve.points, point], "done": spent >= budget})
        write_reference(path, curve)
        echo(f"  {spent / 60:6.1f} min  {steps:7d} steps  validation {res.val_accuracy:.2%}  test {test:.2%}")
        # size the next chunk so that the remaining points spread evenly over the budget
        per_step = res.train_seconds / max(res.steps, 1)
        target = budget / points
        chunk = max(1, min(int((target - res.eval_seconds) / max(per_step, 1e-6)),
                           int((budget - spent) / max(per_step, 1e-6)) + 1))
    return curve


def register_cli(app) -> None:
    """``lse reference``."""
    import typer

    @app.command("reference")
    def reference_cmd(
        pop: Path = typer.Option(Path("population"), "--pop", help="population folder (its data and split are used)"),
        minutes: float = typer.Option(None, "--minutes", help="wall time to train for; default: the experiment's so far"),
        name: str = typer.Option("textbook-cnn", "--name", help="the curve's name (file reference/NAME.json)"),
        learning_rate: float = typer.Option(None, "--learning-rate", help="SGD learning rate (default 0.02)"),
        threads: int = typer.Option(None, "--threads", help="intra-op threads (default: every core this process may use)"),
        seed: int = typer.Option(0, "--seed", help="initialisation and batch order"),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (auto: cuda when available, else cpu)"),
        data_dir: str = typer.Option(None, "--data-dir", help="where the data set is, if not where the experiment found it"),
        points: int = typer.Option(POINTS, "--points", help="points on the curve"),
    ) -> None:
        """Train a hand-designed CNN on the experiment's data for the same wall time: an anchor for lse report."""
        try:
            c = run_reference(pop, minutes=minutes, name=name, learning_rate=learning_rate, threads=threads, seed=seed,
                              device=device, data_dir=data_dir, points=points, echo=typer.echo)
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        last = c.final()
        typer.echo(f"done: {last.steps} steps in {last.seconds / 60:.1f} min, validation {last.val_accuracy:.2%}, "
                   f"test {last.test_accuracy:.2%}; lse report --pop {pop} draws it")
