"""Tokenization of training examples, as the official code tokenizes them.

The prompt and each completion are tokenized separately with ``add_special_tokens=False`` (raw
text: no BOS, no chat template), and the EOS id is appended to every completion
(``tokenize_batch_element`` in the official ``preference_datasets.py``). A tokenizer without a
pad token pads with the EOS, as the official code does.

Examples longer than the context are **counted, reported and skipped**: the official code
truncates the prompt and then the completions to ``max_length``, which can leave a completion
empty (its loss silently zero). An example is too long when the prompt plus its longest
completion exceeds ``max_length`` (every logical sequence must fit the model's context; the
packed layout of :mod:`fspo_bench.logprobs` restarts positions after the prompt, so it
never uses a position past that either).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fspo_bench.trainers.data import Example


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of a prompt and its completions (each ending with the EOS id)."""

    prompt: tuple[int, ...]
    completions: tuple[tuple[int, ...], ...]
    kind: str
    index: int  # position in the list of examples it came from

    @property
    def naive_tokens(self) -> int:
        """Tokens the naive layout processes: the prompt once per completion."""
        return sum(len(self.prompt) + len(c) for c in self.completions)

    @property
    def packed_tokens(self) -> int:
        return len(self.prompt) + sum(len(c) for c in self.completions)

    @property
    def longest(self) -> int:
        return len(self.prompt) + max(len(c) for c in self.completions)


def special_ids(tokenizer: Any) -> tuple[int, int, int]:
    """``(eos_id, pad_id, start_id)``: pad is the EOS when the tokenizer has no pad token;
    ``start_id`` (BOS, else EOS) conditions an empty prompt."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; FSPO completions end with one")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return int(eos), int(pad), int(start)


def encode(tokenizer: Any, examples: Sequence[Example], *, max_length: int | None = None
           ) -> tuple[list[TokenizedExample], list[int]]:
    """``(tokenized examples that fit, indices of the examples that were too long)``."""
    eos, _, start = special_ids(tokenizer)
    texts = [e.prompt for e in examples]
    n_comp = [len(e.completions) for e in examples]
    flat = [c for e in examples for c in e.completions]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    completion_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out: list[TokenizedExample] = []
    too_long: list[int] = []
    position = 0
    for i, example in enumerate(examples):
        prompt = tuple(prompt_ids[i]) or (start,)
        comps = tuple(tuple(ids) + (eos,) for ids in completion_ids[position:position + n_comp[i]])
        position += n_comp[i]
        item = TokenizedExample(prompt, comps, example.kind, i)
        if max_length is not None and item.longest > max_length:
            too_long.append(i)
            continue
        out.append(item)
    return out, too_long
