"""``lse retrain``: train a found architecture once more, longer, as a final model.

Evolution judges an individual after a short training with inherited weights (section 3.4 and
3.6); NAS practice trains the winner again before using it.  Here: the individual's architecture
(``best``, or an id) trains ``steps`` SGD steps -- or as many as fit in ``minutes``, measured on
this machine first -- with a cosine learning-rate decay from the individual's learning rate to 0
(a final-model schedule), from its inherited weights (default) or from scratch.  It is then
evaluated on the validation split and, once, on the test split.

A learning rate that held for evolution's short trainings can diverge over a long one (0.30 did, at
step 390 of a 5,418-step retraining): a diverged retraining starts again from the same weights at a
quarter of the rate, up to ``RETRIES`` times, in the time still left; ``result.json`` lists the
rates that diverged.

The result lives beside the population, never inside evolution's view:
``POP/retrained/<id>-<n>/`` holds ``result.json`` (steps, seconds, schedule, validation and test
accuracy, the FLOPs it cost) and ``weights.safetensors``; it is published by renaming a complete
folder, so a reader sees all of it or nothing.  Workers never read ``retrained/``; ``lse report``
lists what is there; ``lse export`` / ``lse.load`` take ``retrained:<id>-<n>``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from lse.errors import ConfigError, LseError

from lse.reports.models import RESULT, RETRAINED, WEIGHTS, retrained_results  # noqa: E402,F401  (the folder's layout)
#: seconds of a --minutes budget spent measuring the speed (at most this, and 10% of the budget)
CALIBRATION_SECONDS = 15.0
#: the share of a --minutes budget planned as steps at the calibrated speed (the rest absorbs the
#: speed's drift over a long run: 4.6% slower over 10 minutes, docs/search-robust/); a drift
#: beyond it (16% once) is caught by the deadline, which cuts the steps to those that fit
SPEED_MARGIN = 0.95
#: a diverged retraining starts again at learning rate / LR_CUT, at most RETRIES times
LR_CUT, RETRIES = 4.0, 3


def _lr(dna, default: float) -> float:
    v = dna.get("learning_rate") if isinstance(dna, dict) else getattr(dna, "learning_rate", None)
    return float(v) if isinstance(v, (int, float)) else default


def retrain(pop: str | os.PathLike, which: str = "best", *, steps: int | None = None, minutes: float | None = None,
            from_scratch: bool = False, seed: int = 0, device: str = "auto", echo=print) -> dict:
    """Retrain ``which`` of ``pop``; return the published result (see the module docstring)."""
    import torch

    from lse.nn.data import load_dataset
    from lse.reports.models import pick
    from lse.nn.genomes import build, flops
    from lse.nn.train import evaluate, resolve_device, train
    from lse.store.population import Store, save_weights

    if (steps is None) == (minutes is None):
        raise ConfigError("give one of --steps N or --minutes M", "e.g. lse retrain --pop POP best --minutes 10")
    if (steps is not None and steps < 1) or (minutes is not None and not minutes > 0):
        raise ConfigError("--steps and --minutes must be positive", "e.g. --steps 5000")
    t_start = time.time()  # a --minutes budget counts from here: loading the data is part of it
    pop = Path(pop)
    store = Store(pop, read_only=True).open()
    cfg = store.config
    (rec,) = pick(store, which) if which != "ensemble" else (None,)
    if rec is None:
        raise ConfigError("retrain takes one individual", "give best or an id")
    dev = resolve_device(device)
    ds = load_dataset(cfg.dataset, cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed, device=dev,
                      image=cfg.image_options(), flip=cfg.flip)
    shape, ncls = tuple(ds.input_shape), ds.num_classes
    lr = _lr(rec.dna, cfg.initial_learning_rate)

    def fresh():
        torch.manual_seed(seed)
        m = build(rec.genome, rec.dna, shape, ncls)
        if not from_scratch:
            m.load_state_dict(store.load_weights(rec.id), strict=True)
        return m

    common = dict(learning_rate=lr, batch_size=cfg.batch_size, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                  augment=cfg.augment, device=dev, eval_batch_size=cfg.eval_batch_size)
    calibration, deadline = None, None
    if minutes is not None:
        # the speed of this architecture on this machine: a throwaway copy trains briefly
        budget = minutes * 60.0
        probe_s = min(CALIBRATION_SECONDS, 0.1 * budget)
        probe_steps, spent = 20, 0.0
        while True:
            r = train(fresh(), ds, steps=probe_steps, seed=seed + 1, lr_schedule="constant", **common)
            spent += r.train_seconds
            if r.train_seconds >= probe_s / 4 or spent >= probe_s:
                break
            probe_steps *= 4
        per_step = r.train_seconds / max(1, r.steps)
        # what follows the training inside the budget: its validation pass and the test pass
        reserve = r.eval_seconds * (1 + len(ds.test_x) / max(1, len(ds.val_x)))
        # SPEED_MARGIN: a 10-minute retraining ran 4.6% slower than its 15-second calibration
        left = budget - (time.time() - t_start) - reserve
        steps = max(1, int(SPEED_MARGIN * left / per_step))
        deadline = time.monotonic() + left  # slower than calibrated: train() cuts the steps to fit
        calibration = {"steps": r.steps, "seconds": r.train_seconds, "seconds_per_step": per_step,
                       "reserved_seconds": reserve}
        echo(f"retrain {rec.id}: {per_step * 1000:.1f} ms/step here -> {steps} steps in the {minutes:g} minutes left")
    diverged = []  # the learning rates that diverged, and where
    while True:
        model = fresh()
        res = train(model, ds, steps=int(steps), seed=seed, lr_schedule="cosine", deadline=deadline, **common)
        if not (res.failed_reason or "").startswith("diverged"):
            break
        diverged.append({"learning_rate": common["learning_rate"], "steps": res.steps, "reason": res.failed_reason})
        if len(diverged) > RETRIES:
            break
        common["learning_rate"] /= LR_CUT
        if deadline is not None:  # the steps that fit in what is left, at the calibrated speed
            steps = max(1, int(SPEED_MARGIN * (deadline - time.monotonic()) / calibration["seconds_per_step"]))
        echo(f"retrain {rec.id}: {res.failed_reason} at learning rate {diverged[-1]['learning_rate']:.4g}; "
             f"again from the same weights at {common['learning_rate']:.4g} ({steps} steps)")
    if res.failed_reason:
        rates = f" at learning rates {', '.join(format(d['learning_rate'], '.3g') for d in diverged)}" if diverged else ""
        raise ConfigError(f"retraining {rec.id} failed{rates}: {res.failed_reason}", "try fewer steps or another device")
    test_acc = float(evaluate(model, ds.test_x, ds.test_y, cfg.eval_batch_size, dataset=ds))
    fc = flops(rec.genome, rec.dna, shape, ncls, cfg.batch_size, cfg.eval_batch_size)
    n_eval = math.ceil(len(ds.val_x) / cfg.eval_batch_size) + math.ceil(len(ds.test_x) / cfg.eval_batch_size)
    result = {
        "id": rec.id, "from": "scratch" if from_scratch else "weights", "schedule": "cosine",
        "learning_rate": common["learning_rate"], "diverged": diverged,
        "steps": res.steps, "batch_size": cfg.batch_size, "train_seconds": res.train_seconds,
        "minutes_asked": minutes, "steps_asked": None if calibration else steps, "calibration": calibration,
        "steps_planned": int(steps), "cut_by_deadline": res.steps < int(steps),
        "seed": seed, "device": str(dev),
        "val_accuracy_before": rec.val_accuracy, "val_accuracy": res.val_accuracy, "test_accuracy": test_acc,
        "flops": fc.cost(res.steps, n_eval), "flops_calibration": fc.train_per_batch * calibration["steps"] if calibration else 0,
        "params": fc.params, "dataset": ds.record(), "started_at": t_start, "finished_at": time.time(),
    }
    return _publish(pop, rec.id, result, save_weights(model.cpu().state_dict()))


def _publish(pop: Path, individual_id: str, result: dict, weights: bytes) -> dict:
    """POP/retrained/<id>-<n>/, complete or not at all (a hidden folder renamed into place)."""
    root = pop / RETRAINED
    root.mkdir(exist_ok=True)
    tmp = root / f".tmp-{individual_id}-{os.getpid()}"
    tmp.mkdir()
    (tmp / WEIGHTS).write_bytes(weights)
    n = 1
    while True:
        name = f"{individual_id}-{n}"
        result["name"] = name
        (tmp / RESULT).write_text(json.dumps(result, indent=2, default=str) + "\n")
        try:
            os.rename(tmp, root / name)  # fails if the name exists (a non-empty folder): take the next
            return result
        except OSError:
            if not (root / name).exists():
                raise
            n += 1


def register_cli(app) -> None:
    import typer

    @app.command("retrain")
    def retrain_cmd(
        which: str = typer.Argument("best", help="best | an individual id"),
        pop: Path = typer.Option(Path("population"), "--pop", help="population folder"),
        steps: int = typer.Option(None, "--steps", min=1, help="SGD steps of the retraining"),
        minutes: float = typer.Option(None, "--minutes", help="train as many steps as fit in this many minutes here"),
        from_scratch: bool = typer.Option(False, "--from-scratch/--from-weights", help="start from fresh weights (default: the individual's trained weights)"),
        seed: int = typer.Option(0, "--seed", help="batch order, augmentation and (from scratch) initialisation"),
        device: str = typer.Option("auto", "--device", help="auto (cuda when available) | cpu | cuda"),
    ) -> None:
        """Train an architecture again as a final model (cosine schedule); results in POP/retrained/, shown by lse report."""
        try:
            r = retrain(pop, which, steps=steps, minutes=minutes, from_scratch=from_scratch, seed=seed, device=device,
                        echo=typer.echo)
        except LseError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        cut = f" (of {r['steps_planned']} planned: slower than calibrated, cut to end in time)" if r["cut_by_deadline"] else ""
        typer.echo(f"retrained {r['id']} from {r['from']}: {r['steps']} steps{cut} in {r['train_seconds']:.0f} s; validation "
                   f"{r['val_accuracy_before']:.4f} -> {r['val_accuracy']:.4f}, test {r['test_accuracy']:.4f}; "
                   f"{r['flops']:.3g} FLOPs; saved in {pop / RETRAINED / r['name']}")
