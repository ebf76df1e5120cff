"""MusicGen in MLX."""
