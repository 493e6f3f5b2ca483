"""Small, learnable stand-in data sets written in exactly the standard on-disk formats.

Tests, `lse simulate`, `lse bench` and the worker/launcher tests need a data set that loads
through the real readers of :mod:`lse.nn.data` but is tiny and available offline.  Each class
gets a fixed smooth random pattern; an image is that pattern plus pixel noise, so a tiny model
(even a linear one) beats chance within a few hundred SGD steps, and random crops of up to
4 pixels (the augmentation of section 3.4) keep the class recognisable.

Formats written (byte for byte what the official downloads contain):

* ``fmt="idx"``: the four gzipped IDX files of (Fashion-)MNIST directly in ``folder``
  (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-...``).
* ``fmt="cifar10"``: ``folder/cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch``,
  ``batches.meta`` (pickled dicts with bytes keys, ``b"data"`` an (N, 3072) uint8 array laid out
  as 1024 red, 1024 green, 1024 blue values, ``b"labels"`` a list of ints).
* ``fmt="cifar100"``: ``folder/cifar-100-python/`` with ``train``, ``test``, ``meta``
  (``b"fine_labels"``, ``b"coarse_labels"``).

In every case pass ``folder`` itself as ``data_dir`` to :func:`lse.nn.data.load_dataset`.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
FORMATS = ("idx", "cifar10", "cifar100")


def write_synthetic(
    folder: str | Path,
    fmt: str = "idx",
    n_train: int = 2000,
    n_test: int = 500,
    seed: int = 0,
    image_shape: tuple[int, int] | None = None,
    num_classes: int | None = None,
    noise: float = 0.35,
) -> Path:
    """Write a learnable data set in ``fmt`` under ``folder``; return ``folder`` (the data_dir).

    ``image_shape`` is (height, width) for IDX (default 28x28); CIFAR is always 3x32x32, as its
    format requires.  ``num_classes`` defaults to 10 (100 for cifar100).  ``noise`` is the share
    of each pixel drawn at random (0: pure class pattern).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if fmt == "idx":
        h, w = image_shape or (28, 28)
        channels = 1
    else:
        if image_shape not in (None, (32, 32)):
            raise ValueError("the CIFAR format stores 32x32 colour images only")
        h, w, channels = 32, 32, 3
    classes = num_classes or (100 if fmt == "cifar100" else 10)

    templates = _templates(rng, classes, channels, h, w)
    train_x, train_y = _draw(rng, templates, n_train, noise)
    test_x, test_y = _draw(rng, templates, n_test, noise)

    if fmt == "idx":
        _write_idx(folder / IDX_FILES["train_images"], train_x[:, 0])
        _write_idx(folder / IDX_FILES["train_labels"], train_y)
        _write_idx(folder / IDX_FILES["test_images"], test_x[:, 0])
        _write_idx(folder / IDX_FILES["test_labels"], test_y)
    elif fmt == "cifar10":
        d = folder / CIFAR10_DIR
        d.mkdir(exist_ok=True)
        parts = np.array_split(np.arange(n_train), 5)
        for i, idx in enumerate(parts, start=1):
            _write_pickle(d / f"data_batch_{i}", _cifar_batch(f"training batch {i} of 5", train_x[idx], train_y[idx], b"labels"))
        _write_pickle(d / "test_batch", _cifar_batch("testing batch 1 of 1", test_x, test_y, b"labels"))
        _write_pickle(
            d / "batches.meta",
            {
                b"label_names": [f"class{c}".encode() for c in range(classes)],
                b"num_cases_per_batch": len(parts[0]),
                b"num_vis": 3072,
            },
        )
    else:
        d = folder / CIFAR100_DIR
        d.mkdir(exist_ok=True)
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            batch = _cifar_batch(name, x, y, b"fine_labels")
            batch[b"coarse_labels"] = [int(v) // 5 for v in y]
            _write_pickle(d / name, batch)
        _write_pickle(
            d / "meta",
            {
                b"fine_label_names": [f"fine{c}".encode() for c in range(classes)],
                b"coarse_label_names": [f"coarse{c}".encode() for c in range((classes + 4) // 5)],
            },
        )
    return folder


def _templates(rng: np.random.Generator, classes: int, channels: int, h: int, w: int) -> np.ndarray:
    """One smooth pattern per class, (classes, channels, h, w) floats in [0, 255].

    Smooth (4x4 blocks upsampled) so that a shift of a few pixels, as the random crop does,
    leaves most of the pattern in place."""
    coarse = rng.uniform(0, 255, size=(classes, channels, (h + 3) // 4, (w + 3) // 4))
    up = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
    return up[:, :, :h, :w]


def _draw(rng: np.random.Generator, templates: np.ndarray, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    classes = templates.shape[0]
    y = (np.arange(n) % classes).astype(np.uint8 if classes <= 256 else np.int64)
    rng.shuffle(y)
    pix = rng.uniform(0, 255, size=(n, *templates.shape[1:]))
    x = (1.0 - noise) * templates[y.astype(np.int64)] + noise * pix
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), y


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, dtype code 0x08 = ubyte, number of dims), big-endian int32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _cifar_batch(label: str, x: np.ndarray, y: np.ndarray, label_key: bytes) -> dict:
    n = x.shape[0]
    return {
        b"batch_label": label.encode(),
        label_key: [int(v) for v in y],
        b"data": x.reshape(n, -1).copy(),  # (N, 3072): R plane, G plane, B plane, row-major
        b"filenames": [f"synthetic_{i:06d}.png".encode() for i in range(n)],
    }


def _write_pickle(path: Path, obj: object) -> None:
    # protocol 2, as the official (Python 2) files: arrays reconstructed via
    # numpy's _reconstruct/ndarray/dtype, the only globals the restricted reader allows.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
