"""The benchmark (issue 6): our server beside its peers on one machine, in one run.

`python -m tests.bench [--quick]` (or `make bench` / `make bench-quick`) writes
tests/bench/results/latest.json and latest.md. Kept out of pytest's collection.
"""
