"""Benchmarks: ``python -m bench`` (see docs/performance.md); ``python -m bench --smoke`` in CI."""
