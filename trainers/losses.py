"""The training losses, as the official code defines them (``preference_loss`` in
``directpreferenceoptimization/trainers.py`` of ``Asap7772/fewshot-preference-optimization``).

Every log-probability here is a sequence log-probability **summed** over the completion's
tokens. With ``h = (logpi(yw) - logref(yw)) - (logpi(yl) - logref(yl))``:

- ``ipo``: ``(h - 1 / (2 beta))^2`` (IPO, Azar et al. 2023, Eq. 17), FSPO's default;
- ``dpo``: ``-logsigmoid(beta h) (1 - eps) - logsigmoid(-beta h) eps`` (conservative DPO with
  label smoothing ``eps``; ``eps = 0`` is DPO);
- ``ipo_token_mean``: TRL's IPO, which averages the log-probs over tokens before taking ``h``.
  It is **not** FSPO's loss (with beta 0.01 the target margin of 50 is per token there, per
  sequence here); kept only as this explicitly named variant;
- ``sft``: the negative log-likelihood of each target completion, summed over its tokens
  (``losses = -policy_chosen_logps`` in the official SFT branch), averaged over completions.

The reward of a completion is ``beta (logpi - logref)``; reward accuracy is the fraction of pairs
whose chosen reward exceeds the rejected one, the margin their difference.

torch is imported inside the functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFERENCE_LOSSES = ("ipo", "dpo", "ipo_token_mean")


@dataclass
class PairLoss:
    """Per-example losses and the detached rewards of both completions."""

    losses: Any
    chosen_rewards: Any
    rejected_rewards: Any


def ipo_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
             beta: float) -> PairLoss:
    """IPO on summed log-probs: ``(h - 1/(2 beta))^2`` per pair."""
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    losses = (h - 1 / (2 * beta)) ** 2
    return PairLoss(losses, beta * (policy_chosen - ref_chosen).detach(),
                    beta * (policy_rejected - ref_rejected).detach())


def dpo_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
             beta: float, label_smoothing: float = 0.0) -> PairLoss:
    """DPO on summed log-probs, optionally conservative (label smoothing)."""
    import torch.nn.functional as F

    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    losses = (-F.logsigmoid(beta * h) * (1 - label_smoothing)
              - F.logsigmoid(-beta * h) * label_smoothing)
    return PairLoss(losses, beta * (policy_chosen - ref_chosen).detach(),
                    beta * (policy_rejected - ref_rejected).detach())


def ipo_token_mean_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any,
                        ref_rejected: Any, beta: float, chosen_tokens: Any,
                        rejected_tokens: Any) -> PairLoss:
    """TRL-style IPO: log-probs divided by the completion's token count first (a variant)."""
    pc, rc = policy_chosen / chosen_tokens, ref_chosen / chosen_tokens
    pr, rr = policy_rejected / rejected_tokens, ref_rejected / rejected_tokens
    return ipo_loss(pc, pr, rc, rr, beta)


def sft_loss(sums: Any, counts: Any) -> Any:
    """Mean over target completions (``counts > 0``) of the summed negative log-likelihood."""
    present = (counts > 0).to(sums.dtype)
    return -(sums * present).sum() / present.sum().clamp(min=1)


def preference_loss(name: str, policy: Any, reference: Any, counts: Any, *, beta: float,
                    label_smoothing: float = 0.0) -> PairLoss:
    """The pair loss ``name`` from ``(batch, 2)`` tensors of summed log-probs (chosen first)
    of the policy and the reference, and the completions' token counts."""
    pc, pr = policy[:, 0], policy[:, 1]
    rc, rr = reference[:, 0], reference[:, 1]
    if name == "ipo":
        return ipo_loss(pc, pr, rc, rr, beta)
    if name == "dpo":
        return dpo_loss(pc, pr, rc, rr, beta, label_smoothing)
    if name == "ipo_token_mean":
        return ipo_token_mean_loss(pc, pr, rc, rr, beta, counts[:, 0], counts[:, 1])
    raise ValueError(f"unknown preference loss {name!r}; valid: {', '.join(PREFERENCE_LOSSES)}")
