"""Contacts: people, described as a resource spec over the shared machinery."""
