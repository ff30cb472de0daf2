"""Automations: rules that act on the workspace's events, run by the workers exactly once per event."""
