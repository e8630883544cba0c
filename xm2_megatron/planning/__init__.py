"""Planning a run before it starts: memory per GPU and time of a parallel layout."""
