"""Benchmarks: run with ``python -m bench.core`` (see docs/performance.md)."""
