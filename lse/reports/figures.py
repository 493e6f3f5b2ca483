"""The report's figures, drawn with matplotlib (Agg backend: no display needed on a cluster).

Each function takes what :mod:`lse.reports.curves` computed plus plain strings, draws one figure and
saves it as a PNG; none reads the population.  Accuracies are drawn in percent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: a worker node or a test has no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lse.reports.curves import Anchor, Band, Curve, Individual  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
STYLES = ["-", "--", "-.", ":"]
ANCHOR_GREYS = ["#222222", "#777777", "#aaaaaa"]

FLOPS_LABEL = "experiment FLOPs so far (sum of F_t N_t + F_v N_v, log scale)"


def time_unit(max_hours: float) -> tuple[str, float]:
    """(unit name, factor from hours): hours for real experiments, minutes or seconds for
    short ones, so that the axis reads 12 s rather than 0.0033 h."""
    if max_hours >= 2.0:
        return "hours", 1.0
    if max_hours * 60.0 >= 2.0:
        return "minutes", 60.0
    return "seconds", 3600.0


def time_label(unit: str) -> str:
    return f"wall-clock time since the experiment started ({unit})"


def _pct(a: np.ndarray) -> np.ndarray:
    return 100.0 * np.asarray(a, dtype=float)


def _unknown(c: Curve) -> np.ndarray:
    """Points where a best individual exists but its test accuracy is unknown."""
    return np.isnan(c.test) & ~np.isnan(c.val)


def progress_figure(
    groups: Mapping[str, Sequence[Curve]],
    bands: Mapping[str, Mapping[str, Band]],
    path: Path,
    title: str = "Progress: test accuracy of the best individual by validation accuracy",
    anchors: Sequence[Anchor] = (),
) -> Path:
    """Figure 2: one panel against wall time, one against FLOPs.

    ``groups`` maps a label to its repeats; a label with one experiment is drawn as its step
    curve (test solid, validation dashed), with two or more as the mean and a +-2 sigma band
    (``bands[label][axis]``) over thin lines of the repeats.  ``anchors``: hand-designed
    networks' test accuracy (`lse reference`), in grey shades with dots at their points."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.0), layout="constrained")
    any_carried = False
    unit, factor = time_unit(max([float(c.hours[-1]) for cs in groups.values() for c in cs if len(c)]
                                 + [float(a.hours[-1]) for a in anchors if len(a)], default=0.0))
    scale = {"hours": factor, "flops": 1.0}
    for g, (label, curves) in enumerate(groups.items()):
        color = COLORS[g % len(COLORS)]
        style = STYLES[g % len(STYLES)]
        for ax, axis in zip(axes, ("hours", "flops")):
            if len(curves) == 1:
                c = curves[0]
                x = getattr(c, axis) * scale[axis]
                ax.step(x, _pct(c.test_shown), where="post", color=color, ls=style, lw=2, label=f"{label}: test")
                ax.step(x, _pct(c.val), where="post", color=color, ls=style, lw=1, alpha=0.45, label=f"{label}: validation")
                any_carried |= bool(_unknown(c).any())
                if c.carried.any():
                    ax.plot(x[c.carried], _pct(c.test_shown[c.carried]), "o", mfc="none", color=color, ms=4)
            else:
                b = bands[label][axis]
                for c in curves:
                    ax.step(getattr(c, axis) * scale[axis], _pct(c.test_shown), where="post", color=color, lw=0.6, alpha=0.35)
                    any_carried |= bool(_unknown(c).any())
                ax.plot(b.x * scale[axis], _pct(b.mean), color=color, ls=style, lw=2, label=f"{label}: mean test of {b.repeats}")
                ok = ~np.isnan(b.std)
                # accuracy lives in [0, 100] %: a band of few, spread-out repeats may cross it
                lo, hi = np.clip(_pct(b.lower), 0, 100), np.clip(_pct(b.upper), 0, 100)
                ax.fill_between(b.x * scale[axis], lo, hi, where=ok, color=color, alpha=0.2, lw=0,
                                label=f"{label}: ±2σ (to the shortest repeat's end)")
    for k, a in enumerate(a for a in anchors if len(a)):
        grey = ANCHOR_GREYS[k % len(ANCHOR_GREYS)]
        for ax, axis in zip(axes, ("hours", "flops")):
            x = getattr(a, axis) * scale[axis]
            ax.step(x, _pct(a.test), where="post", color=grey, lw=1.6, marker=".", ms=5,
                    label=f"{a.label}: test (hand-designed, lse reference)")
    for ax, axis in zip(axes, ("hours", "flops")):
        ax.set_xlabel(time_label(unit) if axis == "hours" else FLOPS_LABEL)
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
        if axis == "flops":
            ax.set_xscale("log")
    axes[0].set_title("against wall time")
    axes[1].set_title("against compute")
    if any_carried:
        axes[0].plot([], [], "o", mfc="none", color="grey",
                     label="test unknown (weights collected): last known value (o), or not drawn")
    handles, labels = axes[0].get_legend_handles_labels()
    # below both panels: inside one it would hide the curves it explains
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, max(1, len(labels))), fontsize=8.5, frameon=False)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def individuals_figure(
    inds: Sequence[Individual],
    start: float,
    ancestry: Sequence[Individual],
    drawn: Sequence[Individual],
    architectures: Mapping[str, str],
    path: Path,
    title: str = "",
    marks: Sequence = (),
) -> Path:
    """Figure 1: every individual as a dot (validation accuracy against time), alive ones
    blue, killed ones grey, failed ones as crosses at 0; the best individual's ancestry as an
    orange line; below, the architectures of ``drawn`` (the best and a few ancestors)."""
    texts = {i.id: "\n".join(textwrap.fill(line, 34) for line in architectures.get(i.id, "?").splitlines() or [""]) for i in drawn}
    lines = max((t.count("\n") + 1 for t in texts.values()), default=1)
    arch_h = 0.9 + 0.17 * lines  # inches: the text boxes' height decides the bottom row
    fig = plt.figure(figsize=(13, 5.5 + arch_h), constrained_layout=True)
    n_arch = max(1, len(drawn))
    gs = fig.add_gridspec(2, n_arch, height_ratios=[5.5, arch_h])
    ax = fig.add_subplot(gs[0, :])
    unit, factor = time_unit(max(((i.born_at - start) / 3600.0 for i in inds), default=0.0))
    h = lambda i: (i.born_at - start) / 3600.0 * factor  # noqa: E731
    dead = [i for i in inds if not i.alive and i.has_fitness]
    alive = [i for i in inds if i.alive and i.has_fitness]
    failed = [i for i in inds if not i.has_fitness]
    ax.scatter([h(i) for i in dead], [100 * i.val_accuracy for i in dead], s=12, c="#b0b0b0", label=f"killed ({len(dead)})")
    ax.scatter([h(i) for i in alive], [100 * i.val_accuracy for i in alive], s=18, c="#1f4e9c", label=f"alive ({len(alive)})")
    if failed:
        ax.scatter([h(i) for i in failed], [0.0] * len(failed), marker="x", s=18, c="#d62728", label=f"failed training ({len(failed)})")
    anc = [i for i in ancestry if i.has_fitness]
    if anc:
        ax.plot([h(i) for i in anc], [100 * i.val_accuracy for i in anc], "-o", color="#ff7f0e", ms=4, lw=1.5, label="ancestry of the best")
        best = anc[-1]
        ax.plot([h(best)], [100 * best.val_accuracy], "*", color="#d62728", ms=16, label=f"best: {100 * best.val_accuracy:.1f}%")
    for k, i in enumerate(drawn):
        if i.has_fitness:
            ax.annotate(chr(ord("A") + k), (h(i), 100 * i.val_accuracy), xytext=(4, 6), textcoords="offset points", fontsize=10, weight="bold")
    draw_marks(ax, marks, factor, right=max((h(i) for i in inds), default=0.0))
    ax.set_xlabel(time_label(unit))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title or "Every individual that ever lived")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    for k, i in enumerate(drawn):
        a = fig.add_subplot(gs[1, k])
        a.axis("off")
        acc = "failed" if not i.has_fitness else f"{100 * i.val_accuracy:.1f}%"
        head = f"{chr(ord('A') + k)}: {'best' if k == len(drawn) - 1 else 'ancestor'}  (val {acc}, gen {i.generation})"
        a.text(0.5, 1.0, head, ha="center", va="top", fontsize=9.5, weight="bold", transform=a.transAxes)
        a.text(
            0.5, 0.93 - 0.25 / arch_h, texts[i.id], ha="center", va="top", fontsize=9, family="monospace", transform=a.transAxes,
            bbox=dict(boxstyle="round", fc="#fff3e0" if k == len(drawn) - 1 else "#f2f2f2", ec="#999999"),
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mutations_figure(stats: Sequence, path: Path) -> Path:
    """Bar chart: per mutation, children produced and children better than their parent."""
    fig, ax = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
    names = [s.name for s in stats]
    y = np.arange(len(names))
    ax.barh(y, [s.children for s in stats], color="#c7d7ef", label="children")
    ax.barh(y, [s.improved for s in stats], color="#1f77b4", label="better than parent")
    for k, s in enumerate(stats):
        ax.text(s.children, k, f"  {s.improved}/{s.children} = {100 * s.rate:.0f}%" if s.children else "", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("children (count)")
    ax.set_title("Which mutations produced children better than their parents (validation accuracy)")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_marks(ax, marks: Sequence, factor: float, right: float) -> None:
    """Section 5's events on a time axis (``factor``: hours -> the axis' unit): periods of a
    changed mutation rate shaded, weight resets as vertical lines, each labelled once."""
    labelled: set[str] = set()
    for m in marks:
        x0 = m.start * factor
        if m.kind == "reset":
            lab = "weight reset" if "reset" not in labelled else None
            ax.axvline(x0, color="#d62728", ls="--", lw=1.4, label=lab)
            labelled.add("reset")
        else:
            x1 = m.end * factor if m.end is not None else max(right, x0)
            lab = m.label if m.label not in labelled else None
            ax.axvspan(x0, x1, color="#2ca02c", alpha=0.12, lw=0, label=lab)
            ax.axvline(x0, color="#2ca02c", lw=1.0)
            labelled.add(m.label)


def distributions_figure(xs: Sequence[float], trend: Mapping[str, Sequence[float]], path: Path,
                         marks: Sequence = (), title: str = "") -> Path:
    """Evolved mutation distributions (section 5, Tuson & Ross): the mean probability of each
    mutation among the individuals born in each time bin, stacked (each column sums to 1)."""
    fig, ax = plt.subplots(figsize=(11, 4.8), constrained_layout=True)
    unit, factor = time_unit(max(xs, default=0.0))
    x = np.asarray(xs) * factor
    names = list(trend)
    colors = plt.get_cmap("tab20")(np.arange(len(names)) % 20)  # 11 mutations: tab10 would repeat one
    ax.stackplot(x, *[np.asarray(trend[n]) for n in names], labels=names, colors=colors, alpha=0.85)
    draw_marks(ax, marks, factor, right=float(x[-1]) if len(x) else 0.0)
    ax.set_xlim(float(x[0]) if len(x) else 0.0, float(x[-1]) if len(x) else 1.0)
    ax.set_ylim(0, 1)
    ax.set_xlabel(time_label(unit))
    ax.set_ylabel("mean probability")
    ax.set_title(title or "How the evolved mutation distributions moved (individuals born in each period)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
