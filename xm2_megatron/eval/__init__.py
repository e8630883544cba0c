"""Evaluation: loss on held-out text and per token position (the post-training scaling law),
the paper's benchmarks offline through lm-evaluation-harness, and MMLU calibration."""
