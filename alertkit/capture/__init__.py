"""Capture: where the application hands events to alertkit (Client, AlertHandler, scopes,
breadcrumbs, metrics, incidents)."""
