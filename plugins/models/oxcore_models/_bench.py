"""``oxcore bench models``: placeholder replaced below."""
import click


@click.command("models")
def models() -> None:
    """MiniLM and Gemma throughput against sentence-transformers and llama.cpp."""
