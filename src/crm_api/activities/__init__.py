"""Activities: notes, calls, emails, meetings and tasks, described as one resource spec."""
