"""One fuzzing session: a prepared cloud, the endpoints, the fuzzer and its report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.fuzz import malformed
from tests.fuzz.engine import Failure, Fuzzer
from tests.fuzz.fixtures import prepare
from tests.fuzz.routes import Endpoint, enumerate_endpoints

SERVICES = ("identity", "image", "placement", "network", "compute")


@dataclass
class Result:
    fuzzer: Fuzzer
    endpoints: list[Endpoint]
    malformed: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failures(self) -> list[Failure]:
        return self.fuzzer.failures

    def report(self) -> str:
        lines = [f"{len(self.endpoints)} endpoints, {self.seconds:.1f} s", self.fuzzer.report()]
        bad = sum(len(v) for v in self.malformed.values())
        lines.append(f"malformed HTTP: {len(malformed.CASES)} cases x {len(self.malformed)} "
                     f"ports, {bad} problems")
        return "\n".join(lines)


def fuzz(ports: dict[str, int], admin_password: str, *, seed: int, per_endpoint: int,
         budget_s: float | None = None, sweep_every: int = 150) -> Result:
    """Prepare the cloud on ``ports``, fuzz every endpoint ``per_endpoint`` times (stopping
    early after ``budget_s`` seconds), then the malformed-HTTP cases on every port."""
    started = time.monotonic()
    urls = {s: f"http://127.0.0.1:{ports[s]}" for s in SERVICES}
    prepared = prepare(urls, admin_password)
    endpoints = enumerate_endpoints()
    fuzzer = Fuzzer(urls, prepared.admin_token, prepared.member_token, endpoints, seed,
                    protected_ids=prepared.protected_ids)
    fuzzer.image_id = prepared.image_id
    deadline = started + budget_s if budget_s else None
    fuzzer.run(per_endpoint, sweep_every=sweep_every, deadline=deadline)
    result = Result(fuzzer, endpoints)
    for service in SERVICES:
        result.malformed[service] = malformed.run(ports[service])
    fuzzer.check_health()
    result.seconds = time.monotonic() - started
    return result
