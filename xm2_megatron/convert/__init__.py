"""Megatron <-> Hugging Face (Granite) conversion: config, weights, tokenizer."""
