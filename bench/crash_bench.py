"""Crash benchmark: ``kill -9`` the whole cloud under load N times, then count what was lost.

    .venv/bin/python bench/crash_bench.py --kills 6
    .venv/bin/python bench/crash_bench.py --kills 6 \
        --database postgresql+psycopg://postgres@127.0.0.1:5432/postgres \
        --bus amqp://guest:guest@127.0.0.1:5672/

The workload (concurrent boots with and without ports, deletes, port and network creates),
the kill/restart cycle and the checks are those of ``tests/functional/test_crash_recovery.py``
(``tests/functional/crash_harness.py``), with more kills. With ``--database`` a scratch
database is made on that server and dropped afterwards; with ``--bus`` a RabbitMQ virtual
host of its own is used (``rabbitmqctl`` on this machine). Prints and writes
``bench/results/crash.json``: acknowledged, in doubt, lost, resurrected, duplicates, stuck,
usage drift (all but the first two must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--database", default="", help="a MariaDB/PostgreSQL server URL "
                    "(empty: SQLite in the data dir)")
    ap.add_argument("--bus", default="", help="amqp:// URL (default with --database: "
                    "RabbitMQ on localhost; else the in-process bus)")
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--load", type=float, nargs=2, default=(1.0, 6.0),
                    metavar=("MIN", "MAX"), help="seconds of load before each kill")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from tests.conftest import amqp_vhost, scratch_database
    from tests.functional.crash_harness import run

    tmp = Path(tempfile.mkdtemp(prefix="onestack-crash-bench-"))
    bus = args.bus or ("amqp://guest:guest@127.0.0.1:5672/" if args.database else "")
    try:
        with contextlib.ExitStack() as stack:
            env: dict[str, str] = {}
            if args.database:
                scratch = scratch_database(args.database, tmp)
                env["ONESTACK_DATABASE_URL"] = next(scratch)
                stack.callback(next, scratch, None)
            if bus:
                env["ONESTACK_BUS_URL"] = stack.enter_context(amqp_vhost(bus))
            t0 = time.monotonic()
            result = run(tmp, args.kills, env, args.hosts, args.threads, tuple(args.load),
                         args.seed)
            result["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["database"] = args.database.split(":")[0] if args.database else "sqlite"
    result["bus"] = "rabbitmq" if bus else "memory"
    summary = {k: (len(v) if isinstance(v, list) and k not in ("restart_seconds",) else v)
               for k, v in result.items()}
    print(json.dumps(summary, indent=1))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "crash.json").open("a") as fh:
        fh.write(json.dumps(result) + "\n")
    bad = any(summary[k] for k in ("lost", "resurrected", "duplicates", "stuck",
                                   "orphan_ports", "usage_drift"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
