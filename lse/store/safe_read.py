"""One safe read for every file lse reads from a population (issue 29).

Anyone who can write the population folder can plant anything there: a FIFO where a record
should be (a plain ``open`` blocks forever), a sparse 2 GiB "record" (``read`` exhausts memory),
JSON nested 100,000 deep (``json.loads`` raises RecursionError, which no reader expected), a
directory, a symlink out of the population.  Every read goes through :func:`read_bytes` /
:func:`read_json`: never follows a symlink, opens without blocking, accepts only a regular file,
caps the size per kind of file and the nesting of JSON.  What fails raises :class:`UnsafeFile`,
a ``ValueError``, which every reader already treats as "malformed": quarantined by writers,
skipped by read-only readers, and read again next time.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path

KIB, MIB = 1024, 1024 * 1024

#: largest file of each kind that is read (a record of a 10,000-layer DNA is about 2 MiB)
CAPS: dict[str, int] = {
    "record": 8 * MIB,
    "heartbeat": 64 * KIB,
    "death": 64 * KIB,
    "event": 256 * KIB,
    "generation": 1 * MIB,
    "plan": 8 * MIB,
    "eval": 64 * KIB,
    "curve": 16 * MIB,
    "config": 1 * MIB,
    "weights": 4096 * MIB,
}
#: deepest JSON nesting accepted (a record nests 6 levels; a reader that recursed into
#: 100,000 levels died of RecursionError)
MAX_JSON_DEPTH = 32


class UnsafeFile(ValueError):
    """A file that is not a regular file of bounded size holding bounded JSON."""


def read_bytes(path: str | os.PathLike, kind: str) -> bytes:
    """The content of ``path``, a regular file of at most ``CAPS[kind]`` bytes.

    FileNotFoundError and other OSErrors pass through (a file that moved is a lost race, an
    I/O error is not the file's fault); a symlink, a FIFO, a device, a directory or an oversized
    file raise UnsafeFile.  O_NONBLOCK: opening a FIFO with no writer returns at once instead of
    waiting for one, and fstat then refuses it."""
    cap = CAPS[kind]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symlink") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        if st.st_size > cap:
            raise UnsafeFile(f"{path} has {st.st_size:,} bytes, more than a {kind} file may ({cap:,})")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 * MIB, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:  # it grew while being read
                raise UnsafeFile(f"{path} has more than {cap:,} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def loads(data: bytes | str, source: str = "JSON") -> object:
    """``json.loads`` that raises UnsafeFile (a ValueError) for anything it cannot use: invalid
    JSON, bytes that are not UTF-8, nesting deeper than MAX_JSON_DEPTH.  (NaN stays allowed:
    lse's own writer writes it for a non-finite measurement; bounds are the models' job.)"""
    try:
        obj = json.loads(data)
    except RecursionError:
        raise UnsafeFile(f"{source}: JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UnsafeFile(f"{source}: not valid JSON ({e})") from None
    if _depth(obj) > MAX_JSON_DEPTH:
        raise UnsafeFile(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH}")
    return obj


def read_json(path: str | os.PathLike, kind: str) -> object:
    """:func:`read_bytes` then :func:`loads`."""
    return loads(read_bytes(path, kind), str(path))


def finite(value: object, low: float = -math.inf, high: float = math.inf) -> float:
    """``value`` as a float in [low, high] (not a bool, not NaN): for numbers read from a file."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnsafeFile(f"{value!r} is not a number")
    try:
        v = float(value)
    except OverflowError:  # an int of 400 digits
        raise UnsafeFile("number out of range") from None
    if not (math.isfinite(v) and low <= v <= high):
        raise UnsafeFile(f"{v!r} is out of range [{low}, {high}]")
    return v


def _depth(obj: object) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = o.values()
        elif not isinstance(o, list):
            continue
        deepest = max(deepest, d)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((x, d + 1) for x in o if isinstance(x, (dict, list)))
    return deepest


def is_regular(path: Path) -> bool:
    """A regular file, not followed through a symlink (lstat)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_tree(path: str | os.PathLike) -> bool:
    """Delete ``path`` and everything under it, depth first without recursion (a planted chain
    of 10,000 nested folders made shutil.rmtree raise RecursionError in GC, and the tree stayed
    for the next worker to die on), never following a symlink.  True when it is gone."""
    root = os.fspath(path)
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            os.unlink(root)
            return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    stack = [root]  # folders still to empty, deepest last
    while stack:
        top = stack[-1]
        subdirs = []
        try:
            with os.scandir(top) as it:
                for de in it:
                    try:
                        if de.is_dir(follow_symlinks=False):
                            subdirs.append(de.path)
                        else:
                            os.unlink(de.path)
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            stack.pop()
            continue
        except OSError:
            return False
        if subdirs:
            stack.extend(subdirs)
            continue
        try:
            os.rmdir(top)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        stack.pop()
    return True
