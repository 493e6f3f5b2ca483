"""Whole-file JSON writes outside the population's state: a private file, then one rename, so
a reader never sees half a file.  For caches and side files (the report's test-accuracy cache,
the anchor curves of `lse reference`), not for individuals: those go through
:meth:`lse.store.Store.publish`, which also fsyncs."""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

from lse.errors import StoreError


def write_json_atomic(path: Path, data: object, *, fix: str, indent: int = 1, sort_keys: bool = False) -> None:
    """Write ``data`` as JSON to ``path`` (its folder created if missing).  On a full disk or a
    folder that cannot be written: nothing is left behind and :class:`StoreError` says so, with
    ``fix`` as what to do."""
    # Unique per process, thread and call: two threads of one process (the dashboard's pool)
    # writing the same cache shared ".<name>.<pid>.tmp" and renamed each other's half files.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StoreError(f"cannot write {path} ({e.strerror or e})", fix) from None
