"""Duplicates and merge for contacts and companies."""
