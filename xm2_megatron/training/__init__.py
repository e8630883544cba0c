"""Training: model wrapping, optimizer, the step, checkpoints, monitoring."""
