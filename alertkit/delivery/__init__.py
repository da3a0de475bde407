"""Delivery: the pipeline, one worker per backend, retries, the circuit breaker, statistics and drop announcements."""
