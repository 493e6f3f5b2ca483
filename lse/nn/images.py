"""A user's own images: a folder of labelled image files, or a ``.npz`` of arrays.

``lse launch --dataset folder:PATH`` / ``--dataset npz:FILE`` (see docs/OWNDATA.md) ends here,
through :func:`lse.nn.data.load_dataset` (names ``folder`` and ``npz``), so every algorithm that
takes images takes these too.

* **Folder**: ``PATH/train/<class>/*.png|*.jpg|*.jpeg`` (one sub-folder per class, sorted by
  name: the class index is the position), optionally ``PATH/test/<class>/...``.  Without a
  test folder a seeded, stratified ``test_fraction`` of every class is held out as the test set
  and recorded (seed, fraction, sha256 of the held-out indices).  Images are decoded with
  Pillow; grey when every image is grey, colour otherwise (or ``channels`` forced); resized to
  ``image_size`` (bilinear) when given, otherwise all must share one size.
* **npz**: ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` and ``class_names``.
  Images are (N, H, W) grey, (N, H, W, C) NHWC, or (N, C, H, W) NCHW -- NCHW is recognised
  when dimension 1 is 1 or 3 and the last is not (an ambiguous shape reads as NHWC); uint8, or
  float: in [0, 1] (scaled by 255, judged on x_train) or [0, 255].  Labels are integers
  0..K-1 (K = len(class_names), else max label + 1).
* Decoded folders are cached as one ``.npz`` in :func:`default_cache_home` (``$LSE_CACHE``),
  keyed by every file's path, size and mtime and the options, and written atomically: each
  worker reads the arrays instead of decoding the folder again.

Bad input is refused with one :class:`DataError` naming the file and what is wrong, before
anything is written: an empty class, a single class, unreadable or truncated images (counted
and listed; ``skip_bad`` skips them instead), mixed sizes without ``image_size``, a
decompression bomb (Pillow's ``MAX_IMAGE_PIXELS``), labels out of range, NaN in arrays, a
symlink leading out of the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lse.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass(frozen=True)
class ImageOptions:
    image_size: tuple[int, int] | None = None  # (H, W); None: the images' common size
    channels: int | None = None  # 1 | 3; None: as found
    test_fraction: float = 0.2  # held out as the test set when there is no test set
    skip_bad: bool = False  # skip unreadable images instead of refusing the data set


@dataclass
class ImageArrays:
    train_x: np.ndarray  # (N, C, H, W) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    test_split: dict | None  # how the test set was held out, when it was
    skipped: tuple[str, ...] = ()  # unreadable images skipped (skip_bad)


def default_cache_home() -> Path:
    base = os.environ.get("LSE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "lse")
    return Path(base) / "images"


def parse_dataset_arg(text: str) -> tuple[str, str | None]:
    """``--dataset`` -> (dataset name, data_dir).  ``folder:PATH`` and ``npz:FILE`` name a
    user's data; a bare existing folder or ``.npz`` file is read the same way; anything else is
    a built-in name (checked by the configuration)."""
    for kind in ("folder", "npz"):
        if text.startswith(kind + ":"):
            return kind, str(Path(text[len(kind) + 1:]).expanduser().resolve())
    p = Path(text).expanduser()
    if p.is_dir():
        return "folder", str(p.resolve())
    if p.suffix == ".npz" and p.is_file():
        return "npz", str(p.resolve())
    return text, None


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """``HxW`` (or one number for a square) -> (H, W)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1 or max(hw) > 4096:
        raise DataError(f"--image-size {text!r} is not HxW", "give two positive integers, e.g. --image-size 32x32")
    return hw  # type: ignore[return-value]


def load_images(kind: str, path: str | os.PathLike | None, opts: ImageOptions, seed: int = 0,
                cache_dir: str | os.PathLike | None = None) -> ImageArrays:
    if path is None:
        raise DataError(f"--dataset {kind} needs a path", f"write --dataset {kind}:PATH")
    if kind == "npz":
        return _load_npz(Path(path), opts, seed)
    return _load_folder(Path(path), opts, seed, cache_dir)


# ---------------------------------------------------------------------------------------------
# shared steps


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, dict]:
    """Indices held out as the test set: ``fraction`` of each class (at least one, and at least
    one left for training), drawn with a fresh generator of ``seed``."""
    rng = np.random.default_rng([seed, 28])
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(max(1, int(round(len(idx) * fraction))), len(idx) - 1)
        held.append(rng.permutation(idx)[:k])
    test = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    info = {"seed": int(seed), "fraction": float(fraction), "size": int(test.size),
            "indices_sha256": hashlib.sha256(test.astype("<i8").tobytes()).hexdigest()}
    return test, info


def _check_classes(where: str, y: np.ndarray, classes: tuple[str, ...]) -> None:
    if len(classes) < 2:
        raise DataError(f"{where}: only {len(classes)} class ({', '.join(classes) or 'none'})",
                        "a classifier needs at least two classes")
    counts = np.bincount(y, minlength=len(classes))
    empty = [classes[k] for k in range(len(classes)) if counts[k] == 0]
    if empty:
        raise DataError(f"{where}: class {empty[0]!r} has no training images" +
                        (f" (nor {', '.join(map(repr, empty[1:]))})" if len(empty) > 1 else ""),
                        "add images to it or remove the class")


def _convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    """(N, C, H, W) uint8 to ``channels`` (1: ITU-R 601 luma; 3: grey repeated)."""
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x[:, :1], 3, axis=1)
    luma = (x[:, 0] * 0.299 + x[:, 1] * 0.587 + x[:, 2] * 0.114)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, None]


def _resize(x: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(x.shape[2:]) == tuple(size) or x.shape[0] == 0:
        return x
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    out = torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------
# .npz


def _npz_images(path: Path, key: str, a: np.ndarray, scale: float | None) -> tuple[np.ndarray, float]:
    fix = "save images as uint8 or float arrays, (N, H, W), (N, H, W, C) or (N, C, H, W)"
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[-1] in (1, 3):
            a = a.transpose(0, 3, 1, 2)
        elif a.shape[1] not in (1, 3):
            raise DataError(f"{path}: {key} has shape {a.shape}; neither NHWC nor NCHW with 1 or 3 channels", fix)
    else:
        raise DataError(f"{path}: {key} has {a.ndim} dimensions {a.shape}", fix)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a), 1.0
    if a.dtype.kind not in "fiub":
        raise DataError(f"{path}: {key} has dtype {a.dtype}", fix)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(np.size(a) - np.isfinite(a).sum())
        raise DataError(f"{path}: {key} holds {bad} NaN or infinite value(s)", "replace them; lse will not guess pixels")
    if scale is None:
        scale = 255.0 if a.dtype.kind == "f" and a.size and float(a.max()) <= 1.0 else 1.0
    a = a.astype(np.float64) * scale
    if a.size and (a.min() < 0 or a.max() > 255.0 + 1e-6):
        raise DataError(f"{path}: {key} ranges over {a.min():g}..{a.max():g}",
                        "pixels must lie in [0, 255] (or floats in [0, 1])")
    return np.clip(np.rint(a), 0, 255).astype(np.uint8), scale


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    fix = "labels are integers 0..K-1, one per image"
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{path}: {key} has shape {y.shape} for {n} images", fix)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{path}: {key} holds NaN or infinite labels", fix)
        if not np.all(y == np.rint(y)):
            raise DataError(f"{path}: {key} holds non-integer labels", fix)
    elif y.dtype.kind not in "iub":
        raise DataError(f"{path}: {key} has dtype {y.dtype}", fix)
    return y.astype(np.int64)


def _load_npz(path: Path, opts: ImageOptions, seed: int) -> ImageArrays:
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file", "give the path of a .npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path} ({type(e).__name__}: {e})".replace("\n", " "),
                        "write it with numpy.savez (no pickled objects)") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        need = missing or ["x_test and y_test together"]
        raise DataError(f"{path} lacks {', '.join(need)} (has {', '.join(sorted(arrays)) or 'nothing'})",
                        "save x_train, y_train (and optionally x_test, y_test) with numpy.savez")
    tx, scale = _npz_images(path, "x_train", arrays["x_train"], None)
    ty = _npz_labels(path, "y_train", arrays["y_train"], tx.shape[0])
    names = arrays.get("class_names")
    if names is not None:
        classes = tuple(str(s) for s in np.asarray(names).reshape(-1))
    else:
        classes = tuple(str(k) for k in range(int(ty.max()) + 1 if ty.size else 0))
    k = len(classes)
    has_test = "x_test" in arrays
    if has_test:
        ex, _ = _npz_images(path, "x_test", arrays["x_test"], scale)
        ey = _npz_labels(path, "y_test", arrays["y_test"], ex.shape[0])
        if ex.shape[1:] != tx.shape[1:] and opts.image_size is None:
            raise DataError(f"{path}: x_test images are {ex.shape[1:]}, x_train {tx.shape[1:]}",
                            "store them at one size, or pass --image-size HxW")
    for key, y in (("y_train", ty), ("y_test", ey if has_test else ty)):
        if y.size and (y.min() < 0 or y.max() >= k):
            raise DataError(f"{path}: {key} ranges over {int(y.min())}..{int(y.max())}, outside 0..{k - 1} "
                            f"({k} classes)", "fix the labels, or give class_names for every class")
    _check_classes(str(path), ty, classes)
    test_split = None
    if not has_test:
        held, test_split = _stratified_split(ty, opts.test_fraction, seed)
        keep = np.setdiff1d(np.arange(ty.size), held)
        ex, ey, tx, ty = tx[held], ty[held], tx[keep], ty[keep]
    tx, ex = (_convert_channels(_resize(a, opts.image_size), opts.channels) for a in (tx, ex))
    return ImageArrays(tx, ty, ex, ey, classes, test_split)


# ---------------------------------------------------------------------------------------------
# folder


def _inside(root_real: str, p: Path) -> bool:
    real = os.path.realpath(p)
    return os.path.commonpath([root_real, real]) == root_real


def _scan(root: Path, split: str, root_real: str) -> list[tuple[str, list[Path]]]:
    """[(class name, [image paths])] of ``root/split``, sorted; DataError on escaping links."""
    base = root / split
    out = []
    for d in sorted(base.iterdir(), key=lambda p: p.name):
        if d.name.startswith("."):
            continue
        if not _inside(root_real, d):
            raise DataError(f"{d} is a link leading out of {root} (to {os.path.realpath(d)})",
                            "copy the images into the folder instead of linking them")
        if not d.is_dir():
            continue
        files = []
        for f in sorted(d.iterdir(), key=lambda p: p.name):
            if f.name.startswith(".") or f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not _inside(root_real, f):
                raise DataError(f"{f} is a link leading out of {root} (to {os.path.realpath(f)})",
                                "copy the images into the folder instead of linking them")
            files.append(f)
        out.append((d.name, files))
    return out


def _decode(path: Path):
    """(array HxWxC uint8 or HxW, grey?) or raises; a decompression bomb is a DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                grey = im.mode in _GREY_MODES
                im = im.convert("L" if grey else "RGB")
                return im, grey
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path} is a decompression bomb ({e})".replace("\n", " "),
                        "refusing to decode it; remove the file or shrink the image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"


def _fingerprint(root: Path, entries: list[tuple[str, str, list[Path]]], opts: ImageOptions, seed: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([str(root.resolve()), opts.image_size, opts.channels, opts.test_fraction, opts.skip_bad,
                         seed, 1]).encode())
    for split, cls, files in entries:
        for f in files:
            st = f.stat()
            h.update(f"{split}/{cls}/{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _load_folder(root: Path, opts: ImageOptions, seed: int, cache_dir) -> ImageArrays:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", "give a folder holding train/<class>/ image files")
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder", "put the images in train/<class name>/*.png (or .jpg)")
    root_real = os.path.realpath(root)
    train = _scan(root, "train", root_real)
    classes = tuple(c for c, _ in train)
    if len(classes) < 2:
        raise DataError(f"{root / 'train'}: only {len(classes)} class folder ({', '.join(classes) or 'none'})",
                        "a classifier needs at least two classes: one sub-folder per class")
    for c, files in train:
        if not files:
            raise DataError(f"{root / 'train' / c}: class {c!r} has no images (.png, .jpg, .jpeg)",
                            "add images to it or remove the folder")
    entries = [("train", c, f) for c, f in train]
    if (root / "test").is_dir():
        test = _scan(root, "test", root_real)
        unknown = [c for c, _ in test if c not in classes]
        if unknown:
            raise DataError(f"{root / 'test' / unknown[0]}: class {unknown[0]!r} is not among the training classes",
                            f"test classes must be training classes ({', '.join(classes)})")
        entries += [("test", c, f) for c, f in test]
    key = _fingerprint(root, entries, opts, seed)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_home()
    cached = cache / f"{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return ImageArrays(z["train_x"], z["train_y"], z["test_x"], z["test_y"], tuple(meta["classes"]),
                                   meta["test_split"], tuple(meta["skipped"]))
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache is decoded again and replaced
    arrays = _decode_folder(root, entries, classes, opts, seed)
    _write_cache(cached, arrays)
    return arrays


def _decode_folder(root: Path, entries, classes, opts: ImageOptions, seed: int) -> ImageArrays:
    index = {c: k for k, c in enumerate(classes)}
    images, bad = [], []
    for split, c, files in entries:
        for f in files:
            im, grey = _decode(f)
            if im is None:
                bad.append((f, grey))
            else:
                images.append((split, index[c], f, im, grey))
    if bad and not opts.skip_bad:
        listed = ", ".join(f"{p} ({why})" for p, why in bad[:5]) + (f", and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(f"{len(bad)} unreadable or truncated image(s) in {root}: {listed}".replace("\n", " "),
                        "fix or delete them, or pass --skip-bad-images to leave them out")
    if opts.image_size is None:
        sizes = {im.size for *_, im, _ in images}
        if len(sizes) > 1:
            by = {}
            for *_, f, im, _ in images:
                by.setdefault(im.size, f)
            (s1, f1), (s2, f2) = list(by.items())[:2]
            raise DataError(f"{root}: images of {len(sizes)} sizes, e.g. {f1} is {s1[1]}x{s1[0]} and {f2} is "
                            f"{s2[1]}x{s2[0]}", "pass --image-size HxW to resize them all")
    channels = opts.channels or (1 if all(g for *_, g in images) else 3)
    from PIL import Image

    xs, ys, splits = [], [], []
    for split, y, _f, im, _g in images:
        im = im.convert("L" if channels == 1 else "RGB")
        if opts.image_size is not None:
            h, w = opts.image_size
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        ys.append(y)
        splits.append(split)
    x = np.stack(xs)
    y = np.asarray(ys, dtype=np.int64)
    is_test = np.asarray([s == "test" for s in splits])
    tx, ty = x[~is_test], y[~is_test]
    _check_classes(str(root / "train"), ty, classes)
    test_split = None
    if is_test.any():
        ex, ey = x[is_test], y[is_test]
    elif any(s == "test" for s, *_ in entries):
        raise DataError(f"{root / 'test'} holds no readable images", "add test images or remove the test/ folder")
    else:
        held, test_split = _stratified_split(ty, opts.test_fraction, seed)
        keep = np.setdiff1d(np.arange(ty.size), held)
        ex, ey, tx, ty = tx[held], ty[held], tx[keep], ty[keep]
    skipped = tuple(str(p) for p, _ in bad)
    return ImageArrays(np.ascontiguousarray(tx), ty, np.ascontiguousarray(ex), ey, classes, test_split, skipped)


def _write_cache(path: Path, a: ImageArrays) -> None:
    """One .npz, published by rename: a reader sees the whole file or none.  A cache that
    cannot be written (read-only home) costs a decode per worker, nothing else."""
    meta = json.dumps({"classes": list(a.classes), "test_split": a.test_split, "skipped": list(a.skipped)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train_x=a.train_x, train_y=a.train_y, test_x=a.test_x, test_y=a.test_y, meta=np.array(meta))
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)  # type: ignore[possibly-undefined]
        except (OSError, NameError):
            pass
