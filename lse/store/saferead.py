"""One safe read for every file lse reads from a population folder.

Anyone with write access to the shared folder can plant a file where a record, heartbeat or
plan is expected.  Every read goes through :func:`read_bytes` / :func:`read_json`, which refuse
what would crash, hang or exhaust a reader:

- a symlink (``O_NOFOLLOW``): it could point out of the population (``/dev/zero``, secrets);
- anything but a regular file: the file is opened ``O_NONBLOCK`` (a FIFO without a writer then
  opens at once instead of blocking for ever) and ``fstat`` of the *opened* descriptor must say
  regular file, so a swap between a check and the open cannot slip a FIFO or device in;
- more bytes than the kind's cap (a sparse 2 GiB file costs nothing to make and everything to
  read): the size is checked before reading and the read stops at cap + 1 bytes;
- JSON nested deeper than :data:`MAX_DEPTH` (``json.loads`` recurses: 100,000 ``[`` raise
  ``RecursionError``, which no ``except ValueError`` caught, and ended every worker).

What fails raises :class:`UnsafeFile` (a :class:`CorruptIndividual`, so writers quarantine it
the way they quarantine any malformed individual, and read-only readers skip it).  A missing
file is ``FileNotFoundError`` as before; other I/O errors stay ``OSError``.
"""

from __future__ import annotations

import errno
import json
import os
import stat

from lse.errors import CorruptIndividual

__all__ = ["CAPS", "MAX_DEPTH", "UnsafeFile", "parse_json", "read_bytes", "read_json", "too_deep"]

#: bytes a file of each kind may hold.  Records carry a genome (a few KiB; 4 MiB is generous),
#: weights the largest network a worker trains (1 GiB: 268M float32 parameters, far past the
#: paper's largest net; a sparse 2 GiB "weights" file gave MemoryError); the rest are a few
#: hundred bytes.
CAPS: dict[str, int] = {
    "record": 4 << 20,
    "weights": 1 << 30,
    "heartbeat": 64 << 10,
    "death": 64 << 10,
    "event": 64 << 10,
    "generation": 1 << 20,
    "plan": 4 << 20,
    "eval": 1 << 20,
    "reference": 4 << 20,
    "config": 1 << 20,
    "classes": 4 << 20,
}

#: deepest JSON nesting accepted: every file lse writes is well under 20 levels deep
MAX_DEPTH = 64


class UnsafeFile(CorruptIndividual):
    """A population file that is not something lse would have written (wrong type, too big,
    too deep, not JSON): quarantine or skip it, never trust it."""


def read_bytes(path: str | os.PathLike, kind: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``CAPS[kind]``; never follows a symlink,
    never blocks on a FIFO.  Raises UnsafeFile, FileNotFoundError or OSError."""
    cap = CAPS[kind]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symlink; refusing to follow it") from None
        # Any other error (EIO, EISDIR or ENOENT injected by a failing open) stays an OSError:
        # the caller looks again with lstat before it calls anything malformed.
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        if st.st_size > cap:
            raise UnsafeFile(f"{path} holds {st.st_size} bytes, more than a {kind} file may ({cap})")
        # Regular files ignore O_NONBLOCK.  Read to cap + 1 whatever fstat said: a file that
        # grows while read is cut off there, never read without end.
        chunks: list[bytes] = []
        got = 0
        while got <= cap:
            b = os.read(fd, min(1 << 20, cap + 1 - got))
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got > cap:
            raise UnsafeFile(f"{path} grew past the size a {kind} file may have ({cap} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def too_deep(obj: object, limit: int = MAX_DEPTH) -> bool:
    """Whether parsed JSON nests deeper than ``limit``: an iterative walk (no stack), stopping at
    the first node too deep.  ``json.loads`` itself raises RecursionError near the interpreter's
    limit; what parses below it could still exhaust the stack of a recursive consumer (pydantic,
    ``json.dumps``, genome validation)."""
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = o.values()
        elif not isinstance(o, list):
            continue
        if d >= limit:
            return True
        stack.extend((x, d + 1) for x in o if isinstance(x, (dict, list)))
    return False


def parse_json(data: bytes, source: str) -> object:
    """``json.loads`` that raises UnsafeFile for anything but valid JSON nested at most
    :data:`MAX_DEPTH` deep."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UnsafeFile(f"{source}: not valid JSON ({str(e)[:200]})") from None
    if too_deep(obj):
        raise UnsafeFile(f"{source}: JSON nested deeper than {MAX_DEPTH} levels")
    return obj


def read_json(path: str | os.PathLike, kind: str) -> object:
    """:func:`read_bytes` then :func:`parse_json`."""
    return parse_json(read_bytes(path, kind), str(path))


