"""Reranking: a model that reads the request and each candidate passage together.

A bi-encoder (the embedding model) compares two vectors made apart; a cross-encoder sees
both texts at once and judges relevance better, at the cost of one forward pass per
passage, so it only reorders the few candidates the vector search found. Any reranker
fits behind `Reranker`; `CrossEncoderReranker` runs a sentence-transformers CrossEncoder
from a local folder (settings.reranker_model). No reranker is configured by default.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Reranker(Protocol):
    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """Blocking: the relevance of each text to the query, in order; higher is more relevant, in [0, 1]."""


class CrossEncoderReranker:
    def __init__(self, model: Any, batch_size: int = 16) -> None:
        self.model, self.batch_size = model, batch_size

    @classmethod
    def load(cls, path: str | Path, device: str | None = "cpu", batch_size: int = 16) -> CrossEncoderReranker:
        """Blocking: a CrossEncoder saved in a local folder (nothing is fetched from a hub)."""
        from sentence_transformers import CrossEncoder

        return cls(CrossEncoder(str(path), device=device, local_files_only=True), batch_size)

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        # One relevance logit per pair, through the model's activation (a sigmoid): scores in [0, 1],
        # comparable to the cosines that MMR weighs them against.
        predicted = self.model.predict([(query, text) for text in texts], batch_size=self.batch_size,
                                       show_progress_bar=False)
        return [float(score) for score in predicted]
