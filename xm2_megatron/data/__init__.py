"""Data: tokenizer, indexed datasets, SFT formatting, dedup, stage mixtures."""
