"""Evaluation: loss and perplexity on held-out text."""
