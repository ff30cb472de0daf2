"""Field history: every change to every field of an object, read from the event log."""
