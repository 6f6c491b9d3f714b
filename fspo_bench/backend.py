"""Model backends: turn generation requests into text (and, optionally, score log-likelihoods)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fspo_bench.component import Component
from fspo_bench.errors import FspoBenchError
from fspo_bench.fingerprint import folder_fingerprint
from fspo_bench.records import Record


@dataclass(frozen=True)
class GenerationParams(Record):
    """Decoding parameters. ``seed`` and ``sample_index`` make sampled generations cacheable."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    sample_index: int = 0


@dataclass(frozen=True)
class GenerationRequest(Record):
    """One prompt for a backend: raw text (``prompt``) or chat ``messages``, never both.

    ``adapter`` names a trained checkpoint (for example a LoRA adapter) applied on top of the
    backend's model; ``stop`` lists strings that end generation.
    """

    params: GenerationParams
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    stop: list[str] = field(default_factory=list)
    adapter: str | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a GenerationRequest needs exactly one of prompt or messages")


class Backend(Component):
    """A way to run a model. Subclasses implement :meth:`generate`."""

    kind: ClassVar[str] = "backend"
    #: How many requests the runner hands over at once; each batch is cached when it returns.
    batch_size: int = 8

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options

    def identity(self) -> dict[str, Any]:
        """What names this backend's outputs in cache keys (never secrets)."""
        return {"backend": self.name, "model": self.model}

    def check(self, params: GenerationParams | None = None) -> None:
        """Fail early, with one clear FspoBenchError, if the model cannot be used at all (or,
        given the run's decoding ``params``, cannot decode with them)."""

    def adapter_revision(self, adapter: str | None) -> str | None:
        """The content fingerprint of a local adapter folder, for cache keys (None: no adapter)."""
        if adapter is None:
            return None
        path = Path(adapter).expanduser()
        if not path.is_dir():
            raise FspoBenchError(f"cannot load adapter {adapter}: no such folder")
        return folder_fingerprint(path)

    def status(self) -> str:
        """A short live status for progress displays (retries, cost so far); may be empty."""
        return ""

    def estimate_cost(self, requests: Sequence[GenerationRequest]) -> float:
        """Estimated USD cost of running these requests (0 for local models)."""
        return 0.0

    def render_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model is given for a request; backends that apply a chat
        template override this for ``messages`` requests."""
        if request.prompt is None:
            raise FspoBenchError(f"backend {self.name!r} cannot render chat messages to text")
        return request.prompt

    def token_count(self, text: str) -> int | None:
        """How many tokens ``text`` is for this model (None: unknown); answer health uses it
        to tell an answer cut by ``max_new_tokens`` (``truncated``)."""
        return None

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Generate one completion per request, in order."""

    def loglikelihood(
        self, pairs: Sequence[tuple[str, str]], adapter: str | None = None
    ) -> list[float]:
        """Summed log-probability of each continuation given its context."""
        raise NotImplementedError(f"backend {self.name!r} cannot score log-likelihoods")
