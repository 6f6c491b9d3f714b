"""The official FSPO prompt format: builders for prompts and completions, and a parser.

Source of the format
--------------------
GitHub ``Asap7772/fewshot-preference-optimization``, file
``directpreferenceoptimization/preference_datasets.py`` (commit 448f26cb), function
``shots_to_text`` with ``include_dispreferred=True`` (what every official loader passes), and
``tokenize_batch_element`` for the EOS. The relevant lines, verbatim::

    fewshot_text += "# Example " + str(i + 1) + "\\n"
    fewshot_text += "## Question \\n" + prompt + "\\n"
    fewshot_text += "## Preferred Response \\n" + preferred + "\\n"
    fewshot_text += "## Dispreferred Response \\n" + dispreferred + "\\n"
    fewshot_text += "\\n"
    ...
    fewshot_text += "# Task\\n"
    ...
    fewshot_text += task_str + "\\n"
    fewshot_text += "## Question \\n" + final_question + "\\n"
    ...
    final_chosen = "## Preferred Response \\n" + final_chosen + "\\n"
    final_rejected = "## Preferred Response \\n" + final_rejected + "\\n"
    ...
    prefix_persona_chosen = "## User Description\\n" + persona_chosen + "\\n"
    chosen = prefix_persona_chosen + final_chosen

and ``chosen_tokens['input_ids'].append(tokenizer.eos_token_id)`` (same for rejected). The
task string is the zero-shot instruction whenever there are no shots (this branch is tested
first, so it wins over RAT), the RAT instruction when ``add_persona`` is set, and the few-shot
instruction otherwise. This agrees with PAPER.md byte for byte; what PAPER.md leaves implicit:

- every example block ends with one empty line (``"\\n"`` after the dispreferred response);
  there is no empty line between the last ``## Question`` line and the question, nor after the
  final question, whose line ends the prompt;
- only the ``## Question``, ``## Preferred Response`` and ``## Dispreferred Response`` headers
  carry a trailing space; ``# Example N``, ``# Task`` and ``## User Description`` do not;
- the rejected completion also starts with ``## Preferred Response`` (it is the same slot);
- the official loaders ``.strip()`` every question and response before formatting; the builders
  here do the same, so records with stray whitespace still give the official bytes;
- the EOS is appended as a token id after tokenization; :func:`completion` takes it as text
  (``eos=tokenizer.eos_token``) for callers that tokenize the completion string whole.

Our choices, not in the official code
-------------------------------------
- :func:`oracle_prompt`: the official code has no oracle prompt. (Its closest relative is the
  ``teacher_forced`` RAT option, which appends ``## User Description\\n<description>\\n`` after
  the final question.) Ours puts a ``# User Description`` block, header without a trailing space
  like the other ``#`` headers, after the examples and before ``# Task``, separated by an empty
  line like an example block, with its own instruction (:data:`ORACLE_INSTRUCTION`, or
  :data:`ORACLE_FEW_SHOT_INSTRUCTION` when shots are given). The completion is the usual one.
- :func:`parse_generation` (the official repository has no generation code).
- :func:`chat_messages`: a chat-template variant; FSPO itself uses the raw text, no template.
- Forced RAT answers (:func:`fspo_bench.method.forced_answer`): a RAT generation that ends
  after its description without an answer is continued with ``## Preferred Response \\n``
  appended to the prompt and the description, so the method always answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fspo_bench.records import Preference

EXAMPLE_HEADER = "# Example {index}"
QUESTION_HEADER = "## Question "
PREFERRED_HEADER = "## Preferred Response "
DISPREFERRED_HEADER = "## Dispreferred Response "
RESPONSE_HEADER = "## Response "  # official variant without dispreferred responses; parsed only
TASK_HEADER = "# Task"
DESCRIPTION_HEADER = "## User Description"
ORACLE_DESCRIPTION_HEADER = "# User Description"

FEW_SHOT_INSTRUCTION = (
    "Given the examples above, generate a preferred response to the following question."
)
RAT_INSTRUCTION = (
    "Generate a user description based on the examples above. "
    "Then, generate a preferred response to the following question."
)
ZERO_SHOT_INSTRUCTION = "Generate a response to the following question."
ORACLE_INSTRUCTION = (
    "Given the user description above, generate a preferred response to the following question."
)
ORACLE_FEW_SHOT_INSTRUCTION = (
    "Given the user description and the examples above, generate a preferred response to the "
    "following question."
)


def _examples(shots: Sequence[Preference]) -> str:
    return "".join(
        f"{EXAMPLE_HEADER.format(index=i)}\n"
        f"{QUESTION_HEADER}\n{shot.question.strip()}\n"
        f"{PREFERRED_HEADER}\n{shot.chosen.strip()}\n"
        f"{DISPREFERRED_HEADER}\n{shot.rejected.strip()}\n"
        "\n"
        for i, shot in enumerate(shots, start=1)
    )


def _task(instruction: str, question: str) -> str:
    return f"{TASK_HEADER}\n{instruction}\n{QUESTION_HEADER}\n{question.strip()}\n"


def few_shot_prompt(shots: Sequence[Preference], question: str, *, rat: bool = False) -> str:
    """The official FSPO prompt: N example preferences of one user, then the new question.

    With no shots the prompt is the official zero-shot one (``# Task``, the zero-shot
    instruction, the question), also when ``rat`` is set, as in the official code. With
    ``rat`` the instruction asks for a user description first (pair it with
    ``completion(..., description=...)``).
    """
    if not shots:
        instruction = ZERO_SHOT_INSTRUCTION
    else:
        instruction = RAT_INSTRUCTION if rat else FEW_SHOT_INSTRUCTION
    return _examples(shots) + _task(instruction, question)


def oracle_prompt(description: str, question: str, shots: Sequence[Preference] = ()) -> str:
    """The oracle-description prompt: the true user description, optional shots, the question.

    Our design (the official code has none), in the official header style: the examples (if
    any), then ``# User Description`` with the description and an empty line, then ``# Task``.
    """
    instruction = ORACLE_FEW_SHOT_INSTRUCTION if shots else ORACLE_INSTRUCTION
    block = f"{ORACLE_DESCRIPTION_HEADER}\n{description.strip()}\n\n"
    return _examples(shots) + block + _task(instruction, question)


def completion(text: str, *, description: str | None = None, eos: str = "") -> str:
    """The official completion for a chosen or a rejected response, optionally with RAT.

    ``## Preferred Response \\n<text>\\n`` then ``eos``; with ``description`` (RAT) it is
    preceded by ``## User Description\\n<description>\\n``.
    """
    head = "" if description is None else f"{DESCRIPTION_HEADER}\n{description.strip()}\n"
    return f"{head}{PREFERRED_HEADER}\n{text.strip()}\n{eos}"


def chat_messages(
    shots: Sequence[Preference], question: str, *, system: str | None = None
) -> list[dict[str, str]]:
    """Chat messages for backends that apply a chat template: one user turn, the same text.

    A deviation from the official raw format (FSPO trains and generates without a chat
    template), meant for instruct baselines; FSPO methods do not use it by default.
    """
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": few_shot_prompt(shots, question)})
    return messages


@dataclass(frozen=True)
class ParsedGeneration:
    """A generation with the format stripped: the answer, and the RAT description if any.

    ``description`` is None when the text has no ``## User Description`` header.
    """

    response: str
    description: str | None = None


def _header_line(header: str) -> str:
    # A header alone on its line, any trailing whitespace (the model may drop the space).
    return rf"^{re.escape(header.strip())}[ \t]*$\n?"


_RESPONSE_RE = re.compile(
    "|".join(_header_line(h) for h in (PREFERRED_HEADER, RESPONSE_HEADER)), re.MULTILINE
)
_DESCRIPTION_RE = re.compile(_header_line(DESCRIPTION_HEADER), re.MULTILINE)
_SECTION_HEADERS = (
    PREFERRED_HEADER,
    RESPONSE_HEADER,
    DISPREFERRED_HEADER,
    QUESTION_HEADER,
    TASK_HEADER,
    DESCRIPTION_HEADER,
    ORACLE_DESCRIPTION_HEADER,
)
# Where a model that keeps going starts a new section: the answer ends there.
_CONTINUATION_RE = re.compile(
    "|".join([_header_line(h) for h in _SECTION_HEADERS] + [r"^# Example \d+[ \t]*$"]),
    re.MULTILINE,
)


def _cut(text: str) -> str:
    match = _CONTINUATION_RE.search(text)
    if match:
        text = text[: match.start()]
    # A generation truncated inside a new section header leaves a partial header line.
    head, _, last = text.rpartition("\n")
    partial = last.strip()
    if partial.startswith("#") and any(
        h.startswith(partial) for h in (*_SECTION_HEADERS, "# Example ")
    ):
        text = head
    return text.strip()


def parse_generation(text: str, stop: Sequence[str] = ()) -> ParsedGeneration:
    """Strip the FSPO format from a generation so that a judge sees only the answer.

    - The text is first cut at the earliest of the ``stop`` strings (an EOS that was decoded
      as text, ``<|eot_id|>``, ...).
    - The answer is what follows the first ``## Preferred Response`` header line (``##
      Response`` is accepted too; trailing whitespace on header lines is optional); text before
      that header is dropped, except a RAT description (after ``## User Description``), which
      is returned as ``description``. Without any header the whole text is the answer.
    - Answer and description end where the model starts a new section (``## Dispreferred
      Response``, ``## Question``, ``# Example N``, ``# Task``, another response or
      description header) or a partial header line left by truncation.
    - A RAT generation truncated before its answer gives its description and an empty answer.
    """
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if ends:
        text = text[: min(ends)]
    response_match = _RESPONSE_RE.search(text)
    description_match = _DESCRIPTION_RE.search(text)
    if description_match and response_match and description_match.start() > response_match.start():
        description_match = None  # a description after the answer is a continuation, not RAT
    description = None
    if description_match:
        end = response_match.start() if response_match else len(text)
        description = _cut(text[description_match.end() : end])
    if response_match:
        response = _cut(text[response_match.end() :])
    elif description_match:
        response = ""
    else:
        response = _cut(text)
    return ParsedGeneration(response=response, description=description)
