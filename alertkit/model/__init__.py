"""The event model: the wire event and its envelope, outcomes, levels, errors, stack traces and plain values. Imports nothing else of alertkit."""
