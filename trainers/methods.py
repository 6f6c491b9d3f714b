"""The ``fspo`` and ``fspo-rat`` methods: serve a checkpoint trained by ``fspo-bench train``.

Both prompt with the official few-shot format (:class:`fspo_bench.OfficialPromptMethod`) and
pass the checkpoint (``--checkpoint OUT``: a LoRA adapter folder or a full model folder) to the
backend as the request's adapter. ``fspo-rat`` asks for a user description first, as it was
trained. Every checkpoint carries ``fspo_card.json``, which names the method that serves it;
serving it with another method (a RAT checkpoint without the RAT prompt, say) is refused, since
the prompt would not be the one it was trained on. :func:`serving` reads a card for any method,
``preft`` included (the baselines' ``preft`` method already takes ``--checkpoint``).

No torch import here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fspo_bench import GenerationParams, GenerationRequest, OfficialPromptMethod, Query
from fspo_bench.errors import FspoBenchError

CARD = "fspo_card.json"


def read_card(checkpoint: str | Path) -> dict[str, Any] | None:
    """The ``fspo_card.json`` of a checkpoint folder, None if it has none."""
    path = Path(checkpoint).expanduser() / CARD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FspoBenchError(f"cannot read {path}: {exc}") from exc


def serving(checkpoint: str | Path) -> dict[str, str]:
    """How to serve a trained checkpoint: ``{"method", "model", "domain", "checkpoint"}``,
    from its card (``preft`` checkpoints are served by the baselines' ``preft`` method,
    ``fspo`` / ``fspo-rat`` by the methods here, ``sft`` by ``fewshot``)."""
    card = read_card(checkpoint)
    if card is None:
        raise FspoBenchError(f"{checkpoint} has no {CARD}: not a checkpoint fspo-bench trained")
    model = card.get("serve_model") or card.get("base_model")
    return {"method": card["serve_method"], "model": str(model), "domain": card.get("domain", ""),
            "checkpoint": str(Path(checkpoint).expanduser())}


def run_arguments(checkpoint: str | Path) -> list[str]:
    """``fspo-bench run`` arguments that evaluate a trained checkpoint as it was trained."""
    s = serving(checkpoint)
    args = ["run", "--method", s["method"], "--model", s["model"], "--checkpoint", s["checkpoint"]]
    return args + (["--domain", s["domain"]] if s["domain"] else [])


def check_checkpoint(method: str, checkpoint: str | None) -> None:
    """FspoBenchError if ``checkpoint``'s card says another method serves it."""
    if not checkpoint:
        return
    card = read_card(checkpoint)
    if card is not None and card.get("serve_method") not in (None, method):
        raise FspoBenchError(
            f"checkpoint {checkpoint} was trained with --method {card.get('method')}; serve it "
            f"with --method {card.get('serve_method')}, not {method}")


class _CheckedCheckpointMethod(OfficialPromptMethod):
    needs_checkpoint = True

    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        if not getattr(self, "_checked", False):
            check_checkpoint(self.name, self.checkpoint)
            self._checked = True
        return super().build_request(query, params)


SHIPPED = Path(__file__).parent / "adapters" / "embedded"


class FSPOMethod(_CheckedCheckpointMethod):
    name = "fspo"
    shipped_checkpoints = SHIPPED / "fspo"
    description = (
        "FSPO: the official few-shot prompt on a checkpoint trained with few-shot preference "
        "optimization (fspo-bench train --method fspo; --checkpoint; adapters ship for the "
        "embedded model)."
    )


class FSPORATMethod(_CheckedCheckpointMethod):
    name = "fspo-rat"
    description = (
        "FSPO + RAT: the model first writes a user description inferred from the shots, then "
        "the answer (fspo-bench train --method fspo-rat; --checkpoint; adapters ship for the "
        "embedded model)."
    )
    rat = True
    shipped_checkpoints = SHIPPED / "fspo-rat"
