"""``python worker.py --pop DIR [--device auto|cpu|cuda] [--gpu N] [--threads N]``: parse the
arguments and run one worker (lse.runners.worker.run_worker)."""

from __future__ import annotations

import logging
import os

from lse.config import WorkerOptions
from lse.runners.worker import run_worker


def main(argv: list[str] | None = None) -> int:
    """``python worker.py --pop DIR [--device auto|cpu|cuda] [--gpu N] [--threads N]``."""
    import argparse
    import sys

    from lse.errors import LseError

    p = argparse.ArgumentParser(
        prog="worker.py",
        description="One evolution worker (paper section 3.1) on an existing population; "
        "create the population with `python -m lse.runners.launch` first.  Exits 0 on any stop "
        "condition (max-individuals/hours/FLOPs, STOP file, SIGTERM/SIGINT).",
    )
    p.add_argument("--pop", required=True, help="population folder (holds experiment.json)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--gpu", type=int, default=None, help="CUDA device index (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--worker-id", default=None, help="worker id (default: host-pid-random)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="CUDA arithmetic (default auto: see docs/GPU.md)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="CUDA: train eagerly instead of replaying a CUDA graph")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # The worker's own log file gets everything (run_worker); stderr only warnings and errors.
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(stderr)
    try:
        opts = WorkerOptions.parse({"device": args.device, "gpu_index": args.gpu, "threads": args.threads,
                                    "precision": args.precision, "cuda_graph": args.cuda_graph})
        summary = run_worker(args.pop, opts, worker_id=args.worker_id)
    except LseError as e:
        print(f"worker: error: {e}", file=sys.stderr)
        return 2
    print(f"worker {summary.worker_id}: {summary.stop_reason}; published {summary.births}", file=sys.stderr)
    return 0
