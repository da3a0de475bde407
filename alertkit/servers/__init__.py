"""Servers alertkit runs on a port: the webhook bridge."""
