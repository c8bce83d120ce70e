"""The bad-input fuzzer: every endpoint of every service, driven with malformed requests.

``routes`` enumerates the endpoints from the service apps themselves (a new route is fuzzed
without touching this package), ``values`` holds the corpora and mutators, ``engine`` runs
the requests against a running cloud and checks the invariants (no 5xx, nothing stored by a
refused request, lists and shows still answer, every service still answers), ``malformed``
sends malformed HTTP over raw sockets. ``tests/functional/test_bad_input_fuzz.py`` runs a
bounded seeded subset in CI; ``bench/fuzz_bench.py`` runs the whole thing.
"""
