"""Summed completion log-probabilities, with the few-shot prompt computed once per example.

Used by the trainers (policy and reference log-probabilities) and by the ``hf`` backend's
``loglikelihood`` (preference accuracy scores both responses of a pair behind one prompt).

FSPO's chosen and rejected completions share one long few-shot prompt (about ten times longer
than a completion). The official code runs ``[prompt, chosen]`` and ``[prompt, rejected]`` as two
rows (:func:`naive_logps`): the prompt is processed twice. :func:`packed_logps` runs one row
``[prompt, completion_1, completion_2, ...]`` instead, with

- a 4D attention mask in which every completion sees the prompt and its own earlier tokens, and
  never another completion's tokens;
- position ids that restart after the prompt for every completion (``p, p+1, ...``), so each
  completion is at the positions it has in its own ``[prompt, completion]`` row;
- the first token of every completion predicted from the prompt's last position.

The result equals the naive computation up to floating-point rounding (tested), and the
gradients flow through the shared prompt once. Rows are left-padded, so the positions whose
logits are needed are the last ones of every row and only those go through the LM head
(``logits_to_keep``), in both layouts.

The packed layout needs an attention implementation that takes a custom mask: ``sdpa`` (a
boolean mask) or ``eager`` (an additive float mask). Flash-attention kernels do not; use
``layout="naive"`` with them.

Log-probabilities are computed in float32 from the model's logits and **summed** over completion
tokens, the EOS included (the official ``_get_batch_logps`` with ``average_log_prob=False``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol


class Packable(Protocol):
    """Token ids of one prompt and its completions."""

    @property
    def prompt(self) -> Sequence[int]: ...

    @property
    def completions(self) -> Sequence[Sequence[int]]: ...

LAYOUTS = ("packed", "naive")
MASKABLE = ("sdpa", "eager")


WRAPPERS = ("DistributedDataParallel", "FullyShardedDataParallel", "DataParallel")


def _core(model: Any) -> Any:
    """The innermost transformers model (through DDP/FSDP wrappers and a PeftModel)."""
    for _ in range(8):
        if type(model).__name__ in WRAPPERS and hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            break
    return model


def accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(_core(model).forward).parameters
    except (TypeError, ValueError):
        return False


def attention_implementation(model: Any) -> str:
    config = getattr(_core(model), "config", None)
    return str(getattr(config, "_attn_implementation", None) or "eager")


def _device_and_dtype(model: Any) -> tuple[Any, Any]:
    param = next(_core(model).parameters())
    return param.device, param.dtype


def _forward(model: Any, input_ids: Any, attention_mask: Any, position_ids: Any, keep: int) -> Any:
    kwargs: dict[str, Any] = {"use_cache": False}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids, **kwargs).logits
    return logits[:, -keep:, :]


def _sum_per_completion(logits: Any, rows: Any, cols: Any, targets: Any, which: Any,
                        batch: int, width: int) -> tuple[Any, Any]:
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logps = logp[rows, cols, targets]
    sums = torch.zeros(batch, width, dtype=torch.float32, device=logits.device)
    sums = sums.index_put((rows, which), token_logps, accumulate=True)
    counts = torch.zeros(batch, width, dtype=torch.float32, device=logits.device)
    counts = counts.index_put((rows, which), torch.ones_like(token_logps), accumulate=True)
    return sums, counts


def packed_logps(model: Any, items: Sequence[Packable], *, pad_id: int
                 ) -> tuple[Any, Any]:
    """``(sums, counts)``, each ``(batch, max completions)``: summed log-probs and token counts
    of every completion, the prompt computed once per example (see the module docstring).
    Missing completions (examples with fewer) have count 0 and sum 0."""
    import torch

    implementation = attention_implementation(model)
    if implementation not in MASKABLE:
        raise ValueError(
            f"the packed layout needs a custom 4D attention mask, which attention "
            f"implementation {implementation!r} does not take; load the model with "
            f"attn_implementation='sdpa' or 'eager', or use layout='naive'")
    device, dtype = _device_and_dtype(model)
    batch = len(items)
    lengths = [len(item.prompt) + sum(len(c) for c in item.completions) for item in items]
    width_seq = max(lengths)
    keep = max(sum(len(c) for c in item.completions) + 1 for item in items)
    width = max(len(item.completions) for item in items)
    input_ids = torch.full((batch, width_seq), pad_id, dtype=torch.long)
    position_ids = torch.zeros((batch, width_seq), dtype=torch.long)
    allowed = torch.zeros((batch, width_seq, width_seq), dtype=torch.bool)
    rows, cols, targets, which = [], [], [], []
    first_kept = width_seq - keep
    for b, item in enumerate(items):
        start = width_seq - lengths[b]  # left padding
        p = len(item.prompt)
        flat = list(item.prompt) + [t for c in item.completions for t in c]
        input_ids[b, start:] = torch.tensor(flat, dtype=torch.long)
        positions = list(range(p)) + [p + j for c in item.completions for j in range(len(c))]
        position_ids[b, start:] = torch.tensor(positions, dtype=torch.long)
        idx = torch.arange(start)
        allowed[b, idx, idx] = True  # padding attends itself only (no fully masked row)
        allowed[b, start:start + p, start:start + p] = torch.ones(p, p, dtype=torch.bool).tril()
        offset = start + p
        for k, comp in enumerate(item.completions):
            n = len(comp)
            allowed[b, offset:offset + n, start:start + p] = True
            allowed[b, offset:offset + n, offset:offset + n] = torch.ones(
                n, n, dtype=torch.bool).tril()
            predictors = [start + p - 1] + list(range(offset, offset + n - 1))
            rows.extend([b] * n)
            cols.extend(i - first_kept for i in predictors)
            targets.extend(comp)
            which.extend([k] * n)
            offset += n
    if implementation == "sdpa":
        mask = allowed[:, None]
    else:
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        mask = mask[:, None]
    logits = _forward(model, input_ids.to(device), mask.to(device), position_ids.to(device), keep)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=logits.device)  # noqa: E731
    return _sum_per_completion(logits, as_tensor(rows), as_tensor(cols), as_tensor(targets),
                               as_tensor(which), batch, width)


def naive_logps(model: Any, items: Sequence[Packable], *, pad_id: int
                ) -> tuple[Any, Any]:
    """The same as :func:`packed_logps`, the official way: one ``[prompt, completion]`` row
    per completion (the prompt runs once per completion), left-padded, one forward."""
    import torch

    device, _ = _device_and_dtype(model)
    seqs = [(b, k, list(item.prompt) + list(comp))
            for b, item in enumerate(items) for k, comp in enumerate(item.completions)]
    width_seq = max(len(s) for _, _, s in seqs)
    keep = max(len(comp) for item in items for comp in item.completions) + 1
    n = len(seqs)
    input_ids = torch.full((n, width_seq), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width_seq), dtype=torch.long)
    rows, cols, targets, which, owners = [], [], [], [], []
    first_kept = width_seq - keep
    for r, (b, k, seq) in enumerate(seqs):
        start = width_seq - len(seq)
        input_ids[r, start:] = torch.tensor(seq, dtype=torch.long)
        attention_mask[r, start:] = 1
        comp = items[b].completions[k]
        m = len(comp)
        rows.extend([r] * m)
        cols.extend(i - first_kept for i in range(width_seq - m - 1, width_seq - 1))
        targets.extend(comp)
        which.extend([0] * m)
        owners.append((b, k))
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = _forward(model, input_ids.to(device), attention_mask.to(device),
                      position_ids.to(device), keep)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=logits.device)  # noqa: E731
    row_sums, row_counts = _sum_per_completion(
        logits, as_tensor(rows), as_tensor(cols), as_tensor(targets), as_tensor(which), n, 1)
    width = max(len(item.completions) for item in items)
    batch_idx = as_tensor([b for b, _ in owners])
    comp_idx = as_tensor([k for _, k in owners])
    sums = torch.zeros(len(items), width, dtype=torch.float32, device=logits.device)
    sums = sums.index_put((batch_idx, comp_idx), row_sums[:, 0])
    counts = torch.zeros(len(items), width, dtype=torch.float32, device=logits.device)
    counts = counts.index_put((batch_idx, comp_idx), row_counts[:, 0])
    return sums, counts


def completion_logps(model: Any, items: Sequence[Packable], *, pad_id: int,
                     layout: str = "packed") -> tuple[Any, Any]:
    """Summed log-probs and token counts of every completion, in ``layout``."""
    if layout == "packed":
        return packed_logps(model, items, pad_id=pad_id)
    if layout == "naive":
        return naive_logps(model, items, pad_id=pad_id)
    raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
