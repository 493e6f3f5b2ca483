"""Text read from a population, made safe to print on a terminal.

Anyone who can write to the shared folder writes the notes, reasons, worker and host names
that ``lse events``, ``lse pop show`` and ``lse status`` print.  Printed raw, an escape sequence
there retitles the user's terminal (OSC), rewrites lines already on screen, or reorders what
follows (bidirectional overrides, "Trojan Source").  :func:`terminal_safe` spells every such
character as a visible escape (``\\x1b``, ``\\u202e``) instead.
"""

from __future__ import annotations

import unicodedata

__all__ = ["terminal_safe"]


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else (f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")


def terminal_safe(text: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """``text`` with control characters (C0, DEL, C1: ESC starts every terminal sequence) and
    format characters (bidirectional overrides and isolates, zero-width characters) escaped;
    ``newlines`` keeps ``\\n``.  ``limit`` cuts the result to that many characters, marked."""
    s = str(text)
    out = []
    for c in s:
        if c == "\n" and newlines:
            out.append(c)
        elif unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(_escape(c))
        else:
            out.append(c)
    r = "".join(out)
    if limit is not None and len(r) > limit:
        r = r[: max(0, limit - 1)] + "…"
    return r
