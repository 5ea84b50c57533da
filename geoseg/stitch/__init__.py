"""Tiled inference with tapered blending: one class map and confidence, chunk by chunk."""
