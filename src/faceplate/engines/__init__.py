"""Engines: llama.cpp chat models, sentence-transformers embeddings, and a deterministic fake."""
