"""MLX-RAG core."""
