"""Companies: organisations, described as a resource spec over the shared machinery."""
