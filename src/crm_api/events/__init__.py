"""Events: the outbox rows every write appends, in the same statement as the write."""
