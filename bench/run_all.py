"""Run every benchmark in turn (``make bench``); each prints its table and writes bench/results/."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_signal.py", "bench_groups.py", "bench_media.py", "bench_store.py", "bench_transport.py", "bench_messenger.py",
           "bench_e2e.py", "bench_scaleout.py"]


def main() -> int:
    failed = []
    for name in BENCHES:
        path = HERE / name
        if not path.exists():
            print(f"== {name}: missing", file=sys.stderr)
            failed.append(name)
            continue
        print(f"\n== {name}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, str(path), *sys.argv[1:]], cwd=HERE.parent)
        print(f"== {name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
