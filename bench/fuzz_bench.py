#!/usr/bin/env python3
"""The full bad-input fuzzer over every endpoint of every service.

    .venv/bin/python bench/fuzz_bench.py [--requests 40000] [--seed 1] [--dir /tmp]

Starts ``onestack up`` on free ports (data dir under ``--dir``), prepares one of each
resource, sends about ``--requests`` malformed requests spread evenly over every endpoint
the apps serve (``tests/fuzz``: wrong types, nulls, huge and ill-formed strings, extreme
numbers, deep nesting, unknown/missing fields, bad ids, headers and microversions), then the
malformed-HTTP cases on every port. Prints requests / 2xx / 4xx / 5xx per service and every
failure (5xx, hang, a refused write that stored something, a list or show that stopped
answering, a service that stopped answering); writes ``bench/results/fuzz.json`` and exits
non-zero on any failure. CI runs a bounded subset (``tests/functional/test_bad_input_fuzz.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_cloud  # noqa: E402
from tests.fuzz.routes import enumerate_endpoints  # noqa: E402
from tests.fuzz.session import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=40000, help="about this many requests")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="where the data dir goes (default: /tmp)")
    args = ap.parse_args()
    per_endpoint = max(1, args.requests // len(enumerate_endpoints()))
    tmp = Path(tempfile.mkdtemp(prefix="onestack-fuzz-bench-", dir=args.dir))
    cloud = start_cloud(tmp / "data")
    try:
        t0 = time.monotonic()
        result = fuzz(cloud.ports, cloud.admin_password, seed=args.seed,
                      per_endpoint=per_endpoint, sweep_every=100)
        print(f"seed {args.seed}, {per_endpoint} requests per endpoint")
        print(result.report())
        for failure in result.failures:
            print("FAIL", failure)
        for service, problems in result.malformed.items():
            for p in problems:
                print("FAIL malformed", service, p)
        out = {"seed": args.seed, "per_endpoint": per_endpoint,
               "endpoints": len(result.endpoints), "seconds": round(time.monotonic() - t0, 1),
               "services": {s: {"requests": st.requests, **dict(st.codes)}
                            for s, st in result.fuzzer.stats.items()},
               "failures": [str(f) for f in result.failures],
               "malformed_problems": result.malformed}
        (ROOT / "bench" / "results").mkdir(exist_ok=True)
        (ROOT / "bench" / "results" / "fuzz.json").write_text(json.dumps(out, indent=2) + "\n")
        bad = len(result.failures) + sum(len(v) for v in result.malformed.values())
        return 1 if bad else 0
    finally:
        cloud.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
