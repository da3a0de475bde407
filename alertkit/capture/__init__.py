"""Capture: where the application hands events to alertkit (Client, AlertHandler, scopes, metrics, incidents)."""
