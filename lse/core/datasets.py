"""The standard data sets lse knows by name: the one table of their shapes, classes and whether
augmentation mirrors them.  Pure data: the files are read by lse.nn.data; a user's own data set
(a folder or arrays) carries its own shape and classes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StandardDataset:
    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    classes: int
    #: augmentation mirrors left-right when ``flip`` is not given: a mirrored garment or object is
    #: still one (He et al. 2016 flip CIFAR); a mirrored digit is not
    flip: bool
    #: what schema-1 experiments (no ``flip`` field) did: CIFAR only
    flip_schema1: bool


STANDARD: dict[str, StandardDataset] = {d.name: d for d in (
    StandardDataset("fashion-mnist", (1, 28, 28), 10, flip=True, flip_schema1=False),
    StandardDataset("mnist", (1, 28, 28), 10, flip=False, flip_schema1=False),
    StandardDataset("cifar10", (3, 32, 32), 10, flip=True, flip_schema1=True),
    StandardDataset("cifar100", (3, 32, 32), 100, flip=True, flip_schema1=True),
)}


def shape_of(name: str) -> tuple[int, int, int] | None:
    """(C, H, W) of a standard data set; None for any other."""
    d = STANDARD.get(name)
    return None if d is None else d.shape


def classes_of(name: str) -> int | None:
    d = STANDARD.get(name)
    return None if d is None else d.classes
