"""The mlx-rag command line (assembled by the foundation work)."""


def main() -> None:
    raise SystemExit("mlx-rag: CLI not assembled yet")
