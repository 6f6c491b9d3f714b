"""An example fspo-bench plugin: a method that shows the model only the user's preferred answers.

"Chosen-only" few-shot prompting is a natural ablation of FSPO's prompt: does the model need the
dispreferred responses, or are the liked answers enough? It uses only fspo-bench's public API.
"""

from __future__ import annotations

from fspo_bench import GenerationParams, GenerationRequest, Method, Query, hookimpl


class ChosenOnlyMethod(Method):
    name = "example-chosen-only"
    description = "Example plugin: the user's preferred answers as chat examples, no rejected ones."

    def build_request(self, query: Query, params: GenerationParams) -> GenerationRequest:
        liked = "\n\n".join(
            f"Question: {shot.question}\nAnswer they liked: {shot.chosen}" for shot in query.shots
        )
        content = (
            f"Here are answers this person liked:\n\n{liked}\n\n"
            f"Answer their next question in the way they like.\nQuestion: {query.question}"
        )
        return GenerationRequest(params=params, messages=[{"role": "user", "content": content}])


@hookimpl
def register_methods(register):
    register(ChosenOnlyMethod)
