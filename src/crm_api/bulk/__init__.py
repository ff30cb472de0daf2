"""Bulk jobs: imports of a whole file of records and exports of a whole resource, run by the workers."""
