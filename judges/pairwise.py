"""The ``pairwise`` judge: an AlpacaEval-style personalized comparison by a judge model.

The judge model sees the user's description, the question and the two responses, labelled
(a) and (b), through the template ``templates/pairwise.txt`` (or a template file of your own), and
must end its answer with a line ``Verdict: A``, ``Verdict: B`` or ``Verdict: tie``. The model runs
through any backend plugin (``hf`` for local models, ``litellm`` for API models and
OpenAI-compatible servers).

A completion without a parseable verdict is asked again, up to ``max_retries`` more times, with
a new ``sample_index`` (and temperature 0.7 if the first request was greedy, so that a
deterministic model can answer differently); if none parses, the judgment is invalid
(``winner=None``) and every completion is kept. A verdict is never guessed.

With ``guard`` (the default) a comparison in which a response is degenerate (fewer than four
words, mostly the question, or one word repeated: :mod:`fspo_bench.judges.degenerate`) is
decided by that rule without asking the model: the degenerate response loses (two tie). A
benchmark should never let a judge model's whim make an empty or echoed answer win; set
``guard=false`` to see what the model itself would say (the judge's canaries then test it).

The judge judges the comparisons it is given, in the order given: asking for both orders is the
runner's job.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.errors import FspoBenchError
from fspo_bench.judge import Comparison, Judge
from fspo_bench.records import Judgment, Verdict

from .degenerate import RULE, degenerate_verdict

TEMPLATE_FIELDS = frozenset({"description", "question", "a", "b"})
RETRY_TEMPERATURE = 0.7
#: Put between the completions of successive attempts in ``Judgment.raw``. It contains no
#: "verdict", so parsing the joined text again gives the same result as parsing each attempt.
ATTEMPT_SEPARATOR = "\n\n----- next attempt -----\n\n"

# "Verdict" (any case, optionally inside Markdown emphasis, after "Final"), a separator, an
# optional "response"/"output"/"answer"/"option", then the token: in brackets ("(a)", "[[B]]"),
# or bare. A bare "a" must end the line or be followed by punctuation, so "Verdict: a tie" or
# "Verdict: a clear win for B" is no verdict at all; a bare "b" or "tie" must end its word
# ("Verdict: both" is no verdict).
_VERDICT = re.compile(
    r"\bverdict\b[\s*_:=\-]*"
    r"(?:(?:response|output|answer|option)\s*)?"
    r"(?:"
    r"[(\[]+\s*(?P<bracketed>tie|a|b)\s*[)\]]+"
    r"|(?P<bare_a>a)[*_]*[ \t]*(?=$|[\n\r.,;:!?(\-\u2013\u2014])"
    r"|(?P<bare>tie|b)(?![a-z0-9])"
    r")",
    re.IGNORECASE | re.MULTILINE,
)


def parse_verdict(text: str) -> Verdict | None:
    """The verdict in a judge completion: ``"a"``, ``"b"``, ``"tie"``, or None if there is none.

    The last ``Verdict: ...`` line wins (a model may restate the format before answering).
    Case-insensitive; tolerates ``Verdict: (a)``, ``**Verdict:** B``, ``Final verdict: [[A]]``,
    ``Verdict: Response B``, ``Verdict: tie.``
    """
    matches = list(_VERDICT.finditer(text or ""))
    if not matches:
        return None
    last = matches[-1]
    token = last.group("bracketed") or last.group("bare_a") or last.group("bare")
    return token.lower()  # type: ignore[return-value]


def default_template() -> str:
    return resources.files(__package__).joinpath("templates/pairwise.txt").read_text("utf-8")


def check_template(text: str, where: str = "template") -> str:
    fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    if fields != TEMPLATE_FIELDS:
        missing, extra = TEMPLATE_FIELDS - fields, fields - TEMPLATE_FIELDS
        detail = "; ".join(
            part for part in (
                f"missing {', '.join('{' + f + '}' for f in sorted(missing))}" if missing else "",
                f"unknown {', '.join('{' + f + '}' for f in sorted(extra))}" if extra else "",
            ) if part
        )
        raise FspoBenchError(
            f"{where}: a pairwise template needs exactly the fields {{description}}, "
            f"{{question}}, {{a}}, {{b}} ({detail}); write literal braces as {{{{ and }}}}"
        )
    return text


def default_backend(model: str) -> tuple[str, str]:
    """(backend name, model for it): ``hf`` for "embedded", "hf:..." or a local folder."""
    if model.startswith("hf:"):
        return "hf", model[3:]
    if model == "embedded" or Path(model).expanduser().is_dir():
        return "hf", model
    return "litellm", model


class PairwiseJudge(Judge):
    name = "pairwise"
    description = (
        "A judge model (any backend: hf, litellm) reads the user description, the question and "
        "responses (a) and (b) from a template file and ends with 'Verdict: A|B|tie'; "
        "unparseable answers are retried, then recorded as invalid."
    )

    def __init__(
        self,
        model: str | None = None,
        backend: str | None = None,
        max_retries: int = 2,
        temperature: float = 0.0,
        *,
        max_new_tokens: int = 512,
        seed: int = 0,
        template: str | None = None,
        guard: bool | str = True,
        backend_instance: Backend | None = None,
        **options: Any,
    ) -> None:
        """``options`` go to the backend's constructor (for example ``api_base``, ``device``).

        ``template`` is the path of a template file to use instead of the shipped one; it must
        contain ``{description}``, ``{question}``, ``{a}`` and ``{b}`` and nothing else in braces.
        ``backend_instance`` runs a ready backend object instead of looking one up by name.
        ``guard`` decides comparisons with a degenerate response by rule (module doc).
        """
        super().__init__(**options)
        if str(guard).lower() not in ("true", "false"):
            raise FspoBenchError(f"guard must be true or false, not {guard!r}")
        self.guard = str(guard).lower() == "true"
        if backend_instance is not None:
            model = model or backend_instance.model
            backend = backend or backend_instance.name or type(backend_instance).__name__
        if not model:
            raise FspoBenchError("the pairwise judge needs a judge model (--judge-model)")
        if max_retries < 0:
            raise FspoBenchError(f"max_retries must be >= 0, not {max_retries}")
        if temperature < 0:
            raise FspoBenchError(f"temperature must be >= 0, not {temperature}")
        if backend is None:
            backend, model = default_backend(model)
        elif backend == "hf" and model.startswith("hf:"):
            model = model[3:]
        self.model = model
        self.backend = backend
        self.max_retries = int(max_retries)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.seed = int(seed)
        if template is None:
            self.template = check_template(default_template(), "templates/pairwise.txt")
            self.template_name = "pairwise.txt"
        else:
            path = Path(template).expanduser()
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise FspoBenchError(f"cannot read judge template {template}: {exc}") from None
            self.template = check_template(text, str(path))
            self.template_name = path.name
        self.template_sha256 = hashlib.sha256(self.template.encode("utf-8")).hexdigest()
        self._backend = backend_instance

    # ------------------------------------------------------------------ identity and backend

    def identity(self) -> dict[str, Any]:
        """Judge, the judge model's backend identity (model and weights revision), template hash
        and decoding settings; never the options (they may hold an API key)."""
        return {
            "judge": self.name,
            "model": self.model,
            "backend": self.backend_object().identity(),
            "template": self.template_name,
            "template_sha256": self.template_sha256,
            "max_retries": self.max_retries,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            **({"degenerate_guard": RULE} if self.guard else {}),
        }

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        """As many comparisons at once as the judge model's backend takes."""
        return self.backend_object().batch_size

    def check(self) -> None:
        """An unknown judge model or an unreachable judge server is one error before any work."""
        self.backend_object().check()

    def status(self) -> str:
        return self._backend.status() if self._backend is not None else ""

    def backend_object(self) -> Backend:
        """The backend running the judge model, built on first use."""
        if self._backend is None:
            from fspo_bench import plugins

            self._backend = plugins.get("backend", self.backend)(self.model, **self.options)
        return self._backend

    # ------------------------------------------------------------------ prompts and requests

    def render(self, comparison: Comparison) -> str:
        """The prompt for one comparison."""
        return self.template.format(
            description=comparison.user.description,
            question=comparison.question,
            a=comparison.a,
            b=comparison.b,
        )

    def params(self, attempt: int) -> GenerationParams:
        """Decoding for attempt 0, 1, ...: a new sample index each time; greedy becomes 0.7."""
        temperature = self.temperature
        if attempt > 0 and temperature == 0.0:
            temperature = RETRY_TEMPERATURE
        return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=temperature,
                                seed=self.seed, sample_index=attempt)

    def request(self, comparison: Comparison, attempt: int = 0) -> GenerationRequest:
        return GenerationRequest(
            params=self.params(attempt),
            messages=[{"role": "user", "content": self.render(comparison)}],
        )

    # ------------------------------------------------------------------ judging

    def judge(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        comparisons = list(comparisons)
        completions: list[list[str]] = [[] for _ in comparisons]
        verdicts: list[Verdict | None] = [None] * len(comparisons)
        ruled = {i: degenerate_verdict(c.a, c.b, c.question) for i, c in enumerate(comparisons)
                 } if self.guard else {}
        ruled = {i: verdict for i, verdict in ruled.items() if verdict is not None}
        pending = [i for i in range(len(comparisons)) if i not in ruled]
        backend = self.backend_object() if pending else None
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            requests = [self.request(comparisons[i], attempt) for i in pending]
            texts = backend.generate(requests)
            if len(texts) != len(requests):
                raise FspoBenchError(
                    f"backend {self.backend!r} returned {len(texts)} completions for "
                    f"{len(requests)} judge requests"
                )
            still = []
            for i, text in zip(pending, texts, strict=True):
                text = "" if text is None else str(text)
                completions[i].append(text)
                verdicts[i] = parse_verdict(text)
                if verdicts[i] is None:
                    still.append(i)
            pending = still
        return [self._ruled(c, *ruled[i]) if i in ruled else self._judgment(c, v, texts)
                for i, (c, v, texts) in enumerate(zip(comparisons, verdicts, completions,
                                                      strict=True))]

    def _ruled(self, comparison: Comparison, winner: str, why: str) -> Judgment:
        return Judgment(judge=self.name, user=comparison.user.id, question=comparison.question,
                        a=comparison.a, b=comparison.b, winner=winner,  # type: ignore[arg-type]
                        raw=f"not asked: {why}; Verdict: {winner}", valid=True,
                        meta={**comparison.meta, "attempts": 0, "completions": [],
                              "template_sha256": self.template_sha256, "degenerate": why})

    def _judgment(self, comparison: Comparison, verdict: Verdict | None,
                  completions: list[str]) -> Judgment:
        meta = {**comparison.meta, "attempts": len(completions), "completions": completions,
                "template_sha256": self.template_sha256}
        return Judgment(
            judge=self.name,
            user=comparison.user.id,
            question=comparison.question,
            a=comparison.a,
            b=comparison.b,
            winner=verdict,
            raw=ATTEMPT_SEPARATOR.join(completions),
            valid=verdict is not None,
            meta=meta,
        )
