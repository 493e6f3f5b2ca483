#!/usr/bin/env python3
"""One evolution worker (paper section 3.1): ``python worker.py --pop DIR [--device ...] [--threads N]``.

Thin entry used by Slurm array tasks, the local launcher and docker; the loop is
:func:`lse.runners.worker.run_worker`.
"""

import sys
from pathlib import Path

# Runnable from a checkout without installation: the package sits beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lse.runners.worker_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
