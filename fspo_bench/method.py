"""Personalization methods: turn a query (user, shots, question) into a generation request."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

from fspo_bench.backend import GenerationParams, GenerationRequest
from fspo_bench.component import Component
from fspo_bench.errors import FspoBenchError
from fspo_bench.prompts import (
    DESCRIPTION_HEADER,
    PREFERRED_HEADER,
    ParsedGeneration,
    few_shot_prompt,
    parse_generation,
)
from fspo_bench.records import Query


class Method(Component):
    """A personalization method. Subclasses implement :meth:`build_request`.

    ``needs_checkpoint`` methods run a trained checkpoint (passed as ``checkpoint``) on top of
    the backend's model; the others run the model as it is. ``shipped_checkpoints`` is a folder
    of checkpoints the plugin ships for the embedded model, one subfolder per domain, served
    when a run on the embedded model names no checkpoint.
    """

    kind: ClassVar[str] = "method"
    needs_checkpoint: ClassVar[bool] = False
    shipped_checkpoints: ClassVar[Path | None] = None

    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = checkpoint

    @abstractmethod
    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        """The prompt (or chat messages) and decoding parameters for one query."""

    def parse(self, raw: str) -> ParsedGeneration:
        """Strip prompt-format headers from the model's text (and pull out a RAT description)."""
        return parse_generation(raw)


def checkpoint_for(checkpoint: str | None, domain: str) -> str | None:
    """The checkpoint to serve on ``domain``: ``checkpoint/domain`` when that folder exists (a
    folder of per-domain checkpoints, as plugins ship), else ``checkpoint`` itself."""
    if checkpoint is None:
        return None
    per_domain = Path(checkpoint).expanduser() / domain
    return str(per_domain) if per_domain.is_dir() else checkpoint


class OfficialPromptMethod(Method):
    """A method that prompts with the official raw FSPO few-shot format (no chat template).

    The prompt is followed by the first header of the official completion (``## Preferred
    Response``, or ``## User Description`` with ``rat``), so an untrained model starts its answer
    at once and a trained one continues exactly as it was trained; :meth:`parse` puts that
    header back before stripping the format. With ``needs_checkpoint`` the request carries the
    trained checkpoint as its adapter.
    """

    rat: ClassVar[bool] = False

    def prefill(self) -> str:
        return f"{DESCRIPTION_HEADER if self.rat else PREFERRED_HEADER}\n"

    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        if self.needs_checkpoint and not self.checkpoint:
            raise FspoBenchError(f"method {self.name!r} needs a trained checkpoint (--checkpoint)")
        prompt = few_shot_prompt(query.shots, query.question, rat=self.rat) + self.prefill()
        return GenerationRequest(params=params, prompt=prompt, adapter=self.checkpoint)

    def parse(self, raw: str) -> ParsedGeneration:
        return parse_generation(self.prefill() + raw)
