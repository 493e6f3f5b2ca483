"""A worker's own log file, in the population (logs/<worker id>.log)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path


class _LogFile(logging.FileHandler):
    """A worker's log file (in the population).  When it cannot be written -- the full disk
    the worker is waiting out, a quota -- lines are dropped with ONE message on stderr, not the
    "--- Logging error ---" traceback that logging prints for every line."""

    _failing = False
    _ok = True

    def emit(self, record: logging.LogRecord) -> None:
        self._ok = True
        super().emit(record)
        if self._ok and self._failing:
            self._failing = False
            self.stream.write("(log lines were dropped while this file could not be written)\n")

    def handleError(self, record: logging.LogRecord) -> None:
        self._ok = False
        if not self._failing:
            self._failing = True
            sys.stderr.write(f"warning: cannot write {self.baseFilename} ({sys.exc_info()[1]}); "
                             "dropping its lines until it can\n")


def attach_log_file(path: Path) -> logging.Handler:
    """Send this thread's "lse" log lines to ``path``: workers run as threads (tests, `lse
    simulate`) share the "lse" logger, and each log file must stay one worker's."""
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    me = threading.get_ident()
    handler.addFilter(lambda record: record.thread == me)
    logging.getLogger("lse").addHandler(handler)
    logging.getLogger("lse").setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("lse").removeHandler(handler)
    handler.close()
