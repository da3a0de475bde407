"""Policy: what happens to each event before fan-out (sampling, before_send, scrubbing, size limits, storm control)."""
