"""Pipelines and their ordered stages."""
