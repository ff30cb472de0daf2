"""Custom field definitions (``/v1/custom-fields``) and their enforcement on every record write."""
