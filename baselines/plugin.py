"""The paper's baselines: base, few-shot prompting, oracle description and few-shot Pref-FT."""

from __future__ import annotations

from pathlib import Path

from fspo_bench import (
    GenerationParams,
    GenerationRequest,
    Method,
    OfficialPromptMethod,
    Query,
    hookimpl,
    oracle_prompt,
)


class BaseMethod(Method):
    name = "base"
    description = (
        "The model answers the question alone through its chat template: no personalization. "
        "The reference every winrate is measured against."
    )

    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        return GenerationRequest(
            params=params, messages=[{"role": "user", "content": query.question}]
        )


class FewShotMethod(OfficialPromptMethod):
    name = "fewshot"
    description = (
        "Few-shot prompting: the official FSPO prompt with the user's N preferences, "
        "untrained model."
    )


class PrefFTMethod(OfficialPromptMethod):
    name = "preft"
    description = (
        "Few-shot Pref-FT: the official few-shot prompt on a checkpoint fine-tuned on few-shot "
        "prompts and preferred responses (--checkpoint; adapters ship for the embedded model)."
    )
    needs_checkpoint = True
    shipped_checkpoints = Path(__file__).parent / "adapters" / "embedded" / "preft"


class OracleMethod(OfficialPromptMethod):
    name = "oracle"
    description = (
        "Oracle description: the true user description in the prompt instead of shots "
        "(upper bound)."
    )
    sees_user_profile = True

    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        prompt = oracle_prompt(query.user.description, query.question) + self.prefill()
        return GenerationRequest(params=params, prompt=prompt, adapter=self.checkpoint)


@hookimpl
def register_methods(register):
    for method in (BaseMethod, FewShotMethod, PrefFTMethod, OracleMethod):
        register(method)
