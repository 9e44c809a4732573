"""Inference: tokenizers, decoding, and serving for trained or imported checkpoints."""
