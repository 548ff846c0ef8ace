"""Heads, the alignment model, objectives and saved runs (no trainer, CLI or server here)."""
