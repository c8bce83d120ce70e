"""The bad-input fuzzer in CI: a bounded, seeded run over every endpoint of every service.

Every route the apps serve (enumerated from the apps, so new routes are covered without
touching this file) gets a few malformed requests — wrong types, nulls, huge and ill-formed
strings, extreme numbers, deep nesting, unknown and missing fields, bad ids, bad headers
and microversions — and every port gets the malformed-HTTP cases. Asserted: no 5xx and no
hang, nothing stored by a refused write, every list and show still answering, every service
healthy afterwards. ``ONESTACK_FUZZ_SEED`` picks another seed; ``bench/fuzz_bench.py`` runs
the full fuzzer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from tests.conftest import start_cloud
from tests.fuzz.session import SERVICES, fuzz

SEED = int(os.environ.get("ONESTACK_FUZZ_SEED", "11"))
PER_ENDPOINT = 8
BUDGET_S = 70.0


def test_bad_input_fuzz() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-fuzz-"))
    cloud = start_cloud(tmp / "data")
    try:
        result = fuzz(cloud.ports, cloud.admin_password, seed=SEED,
                      per_endpoint=PER_ENDPOINT, budget_s=BUDGET_S)
        print(result.report())
        # The routes came from the apps: every service, hundreds of endpoints.
        per_service = Counter(e.service for e in result.endpoints)
        assert set(per_service) >= set(SERVICES), per_service
        assert len(result.endpoints) > 300, per_service
        stats = result.fuzzer.stats
        assert all(stats[s].requests > 100 for s in SERVICES), result.report()
        problems = [str(f) for f in result.failures]
        problems += [f"{s}: {p}" for s, ps in result.malformed.items() for p in ps]
        assert not problems, f"seed {SEED}:\n" + "\n".join(problems[:40])
        assert sum(st.codes["5xx"] for st in stats.values()) == 0
    finally:
        cloud.stop()
        shutil.rmtree(tmp, ignore_errors=True)
