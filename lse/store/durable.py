"""The store's kernel of durable writes and listings: what every staged publish is made of.

Files are created private (``O_EXCL``), written whole and fsynced, their folder fsynced, then
published by one rename (lse.store.population).  ``remove_tree`` deletes any tree without
recursion.  Shared by the population, the generation barrier and the event log; none of them
writes a file another way.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from lse.errors import DiskFull, StoreError

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def write_error(root: Path, e: OSError, what: str) -> Exception:
    """The typed error a user can act on for an OSError met while writing into the population
    ``root``: a full disk (DiskFull), a refused write (StoreError); anything else as it is."""
    if e.errno in _FULL:
        return DiskFull(
            f"no space left in {root} while trying to {what}; nothing was published",
            "free space (or raise the quota) and the workers resume",
        )
    if e.errno in _DENIED:
        return StoreError(
            f"cannot write to the population {root} ({os.strerror(e.errno)}) while trying to {what}",
            "check the folder's permissions and that its filesystem is mounted read-write",
        )
    return e

__all__ = ["write_error", "dumps", "fsync_dir", "listdir_sorted", "path_exists", "remove_tree", "safetensors_error", "save_weights",
           "scandir_entries", "unlink_quiet", "weights_from_bytes", "write_file"]

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems refuse fsync on directories; nothing more to do
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (private, must not exist), write all of ``data``, fsync.

    A short write continues where it stopped; a write that makes no progress is a full disk
    (some filesystems report ENOSPC that way).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.ENOSPC, "write made no progress (disk full?)", str(path))
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def dumps(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def save_weights(state_dict: dict) -> bytes:
    """safetensors bytes: a format that cannot run code when read (never pickle)."""
    from safetensors.torch import save

    # Contiguous private copies: safetensors refuses shared or strided storage.
    tensors = {str(k): v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    return save(tensors, metadata={"format": "pt"})


def weights_from_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


def safetensors_error() -> type[Exception]:
    from safetensors import SafetensorError

    return SafetensorError


def path_exists(p: Path) -> bool:
    try:
        os.lstat(p)
        return True
    except OSError:
        return False


def unlink_quiet(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def remove_tree(root: Path) -> bool:
    """Delete ``root`` and everything under it; True when it is gone.

    No recursion and no long paths: each sub-folder is first renamed to the top of ``root``
    (``root/.rm-<n>``), so every operation works on a path two levels deep whatever the depth of
    the tree (``shutil.rmtree`` recursed into a 1,000-deep chain until RecursionError, and paths
    past PATH_MAX fail with ENAMETOOLONG).  Symlinks are removed, never followed.  What refuses
    removal is left and makes the result False.
    """
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            os.unlink(root)
            return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    ok = True
    todo = [root]
    serial = 0
    while todo:
        d = todo.pop()
        try:
            with os.scandir(d) as it:
                children = list(it)
        except FileNotFoundError:
            continue
        except OSError:
            ok = False
            continue
        for de in children:
            try:
                if de.is_dir(follow_symlinks=False):
                    if d == root:
                        todo.append(Path(de.path))
                    else:  # lift it to the top: its path stays short whatever the depth
                        serial += 1
                        top = root / f".rm-{serial}-{secrets.token_hex(3)}"
                        os.rename(de.path, top)
                        todo.append(top)
                else:
                    os.unlink(de.path)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        if d != root:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
    try:
        os.rmdir(root)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return ok


def scandir_entries(d: Path) -> Iterator[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            yield from list(it)
    except FileNotFoundError:
        return


def listdir_sorted(d: Path) -> list[tuple[str, Path]]:
    return sorted((de.name, Path(de.path)) for de in scandir_entries(d))
