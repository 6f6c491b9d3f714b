"""Personalization methods: turn a query (user, shots, question) into a generation request."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, TypeAlias

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

#: Model calls of one query: yield each request, receive the model's text, return the result.
Calls: TypeAlias = Generator[GenerationRequest, str, str]
#: What :meth:`Method.scoring_request` returns: the request, or calls that end with it.
ScoringRequest: TypeAlias = (
    GenerationRequest | Generator[GenerationRequest, str, GenerationRequest]
)


class Method(Component):
    """A personalization method. Subclasses implement :meth:`build_request`.

    ``needs_checkpoint`` methods run a trained checkpoint (passed as ``checkpoint``) on top of
    the backend's model; the others run the model as it is. ``shipped_checkpoints`` is a folder
    of checkpoints the plugin ships for the embedded model, one subfolder per domain, served
    when a run on the embedded model names no checkpoint. ``sees_user_profile`` methods get the
    user's true description and attributes in ``Query.user`` (the oracle); the others see the
    user's id, shots and question only.

    A method that needs several model calls per query (describe, then answer) overrides
    :meth:`calls`; every call goes through the run's cache, so a killed run resumes between two
    calls without repeating the first.
    """

    kind: ClassVar[str] = "method"
    needs_checkpoint: ClassVar[bool] = False
    shipped_checkpoints: ClassVar[Path | None] = None
    sees_user_profile: ClassVar[bool] = False

    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = checkpoint

    @abstractmethod
    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        """The prompt (or chat messages) and decoding parameters for one query."""

    def visible(self, query: Query) -> Query:
        """The query as this method may see it: without the user's profile unless it declares
        ``sees_user_profile``."""
        return query if self.sees_user_profile else query.without_profile()

    def calls(self, query: Query, params: GenerationParams) -> Calls:
        """The model calls that answer one query: a generator that yields each request,
        receives the model's text for it, and returns the raw answer (what :meth:`parse`
        reads). The default makes the one call of :meth:`build_request`."""
        return (yield self.build_request(query, params))

    def scoring_request(self, query: Query, params: GenerationParams) -> ScoringRequest:
        """The request in whose prompt preference accuracy scores a response as this method's
        answer: the request itself (the default), or calls (as :meth:`calls`) that return it."""
        return self.build_request(query, params)

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

    With ``rat``, a model that wrote its description but no answer within the call's
    ``max_new_tokens`` (the description budget) is given a second call whose prompt ends with
    its description and the forced ``## Preferred Response`` header (:func:`forced_answer`), so
    the method always answers; preference accuracy scores responses in that answer slot, after
    the model's own description of the user, not in the description slot.
    """

    rat: ClassVar[bool] = False

    def prefill(self) -> str:
        return f"{DESCRIPTION_HEADER if self.rat else PREFERRED_HEADER}\n"

    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        if self.needs_checkpoint and not self.checkpoint:
            raise FspoBenchError(f"method {self.name!r} needs a trained checkpoint (--checkpoint)")
        prompt = few_shot_prompt(query.shots, query.question, rat=self.rat) + self.prefill()
        return GenerationRequest(params=params, prompt=prompt, adapter=self.checkpoint)

    def calls(self, query: Query, params: GenerationParams) -> Calls:
        request = self.build_request(query, params)
        raw = yield request
        parsed = self.parse(raw)
        if not self.rat or parsed.response or parsed.description is None:
            return raw
        head = forced_answer(parsed.description)
        return head + (yield replace(request, prompt=f"{request.prompt}{head}"))

    def scoring_request(self, query: Query, params: GenerationParams) -> ScoringRequest:
        request = self.build_request(query, params)
        return self._described(request) if self.rat else request

    def _described(self, request: GenerationRequest
                   ) -> Generator[GenerationRequest, str, GenerationRequest]:
        description = self.parse((yield request)).description or ""
        return replace(request, prompt=f"{request.prompt}{forced_answer(description)}")

    def parse(self, raw: str) -> ParsedGeneration:
        return parse_generation(self.prefill() + raw)


def forced_answer(description: str) -> str:
    """What follows the ``## User Description`` header of a RAT prompt when the answer is
    forced: the model's description, then the answer header (a deviation from the official
    decoding, which has none: see fspo_bench.prompts)."""
    return f"{description.strip()}\n{PREFERRED_HEADER}\n"
