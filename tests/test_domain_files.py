"""Loading domains from local files and through the Hub loader path; validation of bad rows."""

from __future__ import annotations

import json

import pytest

from fspo_bench import datafiles, plugins
from fspo_bench.datafiles import MAX_TEXT_CHARS, DataError, write_rows
from fspo_bench.dataset import held_out_quarter, question_id
from fspo_bench.tabular import PAIR_COLUMNS


def domain(name: str):
    return plugins.get("domain", name)()


def signature(data):
    return (sorted(data.users), data.preferences, data.eval_users, data.eval_questions)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
@pytest.mark.parametrize("name", ["reviews", "elix"])
def test_a_local_file_in_the_official_columns_loads_like_builtin(tmp_path, name, suffix):
    rows = domain(name).builtin_rows()
    path = write_rows(rows, tmp_path / f"rows{suffix}")
    assert signature(domain(name).load(str(path))) == signature(domain(name).load())


def test_roleplay_round_trips_through_a_local_file(tmp_path):
    path = write_rows(domain("roleplay").builtin_rows(), tmp_path / "rows.jsonl")
    assert signature(domain("roleplay").load(str(path))) == signature(domain("roleplay").load())


def test_the_hub_loader_path_reads_a_local_dataset_folder(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    rows = domain("elix").builtin_rows()
    write_rows(rows, tmp_path / "hub" / "train.parquet")
    monkeypatch.setattr(type(domain("elix")), "hub_id", str(tmp_path / "hub"))
    from_hub = domain("elix").load("hub")
    assert from_hub.source == f"hub:{tmp_path / 'hub'}"
    assert signature(from_hub) == signature(domain("elix").load())


def good_rows(user: str = "child", n: int = 6) -> list[dict]:
    return [{"prompt": f"Question {i}?", "response_x": f"simple {i}", "response_y": f"hard {i}",
             "label": 0, "level_x": "child", "level_y": "expert", "scorer_level": user}
            for i in range(n)]


BAD_ROWS = [
    ({"response_x": "a", "response_y": "b", "label": 0, "level_x": "child", "level_y": "expert",
      "scorer_level": "child"}, "prompt", "missing column"),
    ({**good_rows()[0], "prompt": "  "}, "prompt", "empty text"),
    ({**good_rows()[0], "response_y": None}, "response_y", "expected text"),
    ({**good_rows()[0], "label": 2}, "label", "label must be 0 or 1"),
    ({**good_rows()[0], "label": "yes"}, "label", "label must be 0 or 1"),
    (good_rows()[0], None, "duplicate pair"),
]


@pytest.mark.parametrize("bad, column, message", BAD_ROWS)
def test_a_bad_row_is_skipped_with_one_line_naming_file_row_and_column(tmp_path, bad, column,
                                                                       message):
    path = write_rows(good_rows() + [bad], tmp_path / "rows.jsonl")
    data = domain("elix").load(str(path))
    assert len(data.preferences) == 6
    (problem,) = data.problems
    assert str(problem).startswith(f"{path}: row 7: ")
    assert message in str(problem)
    if column:
        assert f"column {column!r}" in str(problem)
    with pytest.raises(DataError, match=f"row 7: .*{message}"):
        domain("elix").load(str(path), strict=True)


def test_a_user_with_too_few_rows_for_the_shots_is_dropped(tmp_path):
    path = write_rows(good_rows("child", 6) + good_rows("expert", 3), tmp_path / "rows.jsonl")
    data = domain("elix").load(str(path))
    assert set(data.users) == {"child"}
    (problem,) = data.problems
    assert "user 'expert' has 3 rows; 4 shots need at least 5" in str(problem)
    assert len(domain("elix").load(str(path), shots=2).users) == 2


@pytest.mark.parametrize("content, message", [
    (b'{"prompt": "x"}\n{"prompt": \n', "line 2: malformed JSON"),
    (b'{"prompt": "caf\xe9"}\n', "line 1: invalid UTF-8"),
    (b'[1, 2]\n', "row 1: expected a JSON object"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        domain("elix").load(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_directory_or_a_missing_file_or_an_unknown_type_is_refused(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        domain("elix").load(str(tmp_path))
    with pytest.raises(DataError, match="no such file"):
        domain("elix").load(str(tmp_path / "nope.jsonl"))
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        domain("elix").load(str(tmp_path / "rows.txt"))


def test_no_usable_rows_is_an_error(tmp_path):
    path = write_rows([{"prompt": "q"}], tmp_path / "rows.jsonl")
    with pytest.raises(DataError, match="no usable rows"):
        domain("elix").load(str(path))


def test_roleplay_persona_column_is_validated(tmp_path):
    rows = [r for r in domain("roleplay").builtin_rows() if r["level"] == "persona-01"][:40]
    rows[3] = {**rows[3], "score_persona": "not json"}
    rows[5] = {**rows[5], "score_persona": {"persona_description": ""}}
    data = domain("roleplay").load(str(write_rows(rows, tmp_path / "r.jsonl")), shots=2)
    assert [(p.row, p.column) for p in data.problems if p.column] == [
        (4, "score_persona"), (6, "score_persona")]


def test_official_columns_are_what_builtin_rows_carry():
    assert set(domain("elix").builtin_rows()[0]) == set(PAIR_COLUMNS)
    roleplay = domain("roleplay").builtin_rows()[0]
    assert {"x", "yw", "yl", "level", "score_persona"} <= set(roleplay)
    json.dumps(roleplay)


def texts(data) -> set[str]:
    return {t for p in data.preferences for t in (p.question, p.chosen, p.rejected)}


def test_a_newline_inside_a_quoted_csv_field_is_kept(tmp_path):
    rows = good_rows()
    rows[0] = {**rows[0], "response_x": "first line\nsecond line", "response_y": "one\r\ntwo"}
    data = domain("elix").load(str(write_rows(rows, tmp_path / "rows.csv")))
    assert {"first line\nsecond line", "one\r\ntwo"} <= texts(data) and not data.problems


def test_a_csv_field_of_the_longest_allowed_text_loads(tmp_path):
    rows = good_rows()
    rows[0] = {**rows[0], "response_x": "x" * MAX_TEXT_CHARS}
    data = domain("elix").load(str(write_rows(rows, tmp_path / "rows.csv")))
    assert "x" * MAX_TEXT_CHARS in texts(data) and not data.problems


def test_jsonl_lines_are_split_on_newline_only(tmp_path):
    rows = good_rows()
    rows[0] = {**rows[0], "response_x": "a\u2028b\u2029c\x85d\x0ce\x1cf"}
    path = write_rows(rows, tmp_path / "rows.jsonl")
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw, as JSON allows
    data = domain("elix").load(str(path))
    assert "a\u2028b\u2029c\x85d\x0ce\x1cf" in texts(data) and not data.problems


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, suffix):
    plain = write_rows(good_rows(), tmp_path / f"plain{suffix}")
    marked = tmp_path / f"marked{suffix}"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    loaded = domain("elix").load(str(marked), strict=True)
    assert signature(loaded) == signature(domain("elix").load(str(plain)))


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\xff" * 101)  # not UTF-8: reading it would be another error
    monkeypatch.setattr(datafiles, "MAX_FILE_BYTES", 100)
    with pytest.raises(DataError, match=r"rows.jsonl: 101 bytes; at most 100 are read$"):
        domain("elix").load(str(path))


def held_out_prompts(rows: list[dict]) -> list[str]:
    held = held_out_quarter("elix", "question", (question_id(r["prompt"]) for r in rows))
    return [r["prompt"] for r in rows if question_id(r["prompt"]) in held]


def test_a_held_out_user_without_a_shot_pool_is_dropped(tmp_path):
    rows = good_rows("child", 8)
    only_held_out = [{**row, "prompt": prompt, "response_x": f"{row['response_x']} {prompt}",
                      "scorer_level": "expert"}
                     for prompt in held_out_prompts(rows) for row in rows[:3]]
    path = write_rows(rows + only_held_out, tmp_path / "rows.jsonl")
    data = domain("elix").load(str(path), shots=2)
    assert set(data.users) == {"child"} and "expert" not in data.eval_users
    (problem,) = data.problems
    assert str(problem) == (f"{path}: row 9: user 'expert' has 0 rows outside the held-out "
                            "questions; 2 shots need 2")
    assert data.queries(shots=2)
    with pytest.raises(DataError, match="user 'expert' has 0 rows outside"):
        domain("elix").load(str(path), shots=2, strict=True)


def persona_rows(*levels: str) -> list[dict]:
    return [r for r in domain("roleplay").builtin_rows() if r["level"] in levels]


def test_one_user_described_two_ways_is_dropped(tmp_path):
    rows = persona_rows("persona-01", "persona-02")
    pairs = {(r["x"], r["yw"], r["yl"]) for r in rows}
    rows += [{**r, "level": "persona-01"} for r in persona_rows("persona-03")
             if (r["x"], r["yw"], r["yl"]) not in pairs][:5]
    path = write_rows(rows, tmp_path / "r.jsonl")
    data = domain("roleplay").load(str(path), shots=2)
    assert set(data.users) == {"persona-02"}
    (problem,) = data.problems
    first = next(i for i, r in enumerate(rows, start=1) if r["level"] == "persona-01")
    assert f"user 'persona-01' is described differently than in row {first}" in str(problem)
    with pytest.raises(DataError, match="described differently"):
        domain("roleplay").load(str(path), shots=2, strict=True)


def test_user_ids_of_two_types_that_merge_are_a_problem(tmp_path):
    from fspo_bench.tasks.roleplay.plugin import RoleplayDomain

    class Roleplay(RoleplayDomain):  # names its user column, as PairColumnsDomain does
        user_column = "level"

    rows = [{**r, "level": 7 if i % 2 else "7"} for i, r in enumerate(persona_rows("persona-01"))]
    rows += persona_rows("persona-02")
    path = write_rows(rows, tmp_path / "r.jsonl")
    data = Roleplay().load(str(path), shots=2)
    assert set(data.users) == {"persona-02"}
    (problem,) = data.problems
    assert str(problem) == (f"{path}: row 2: user id 7 (int) and '7' of row 1 (str) merge into "
                            "one user '7'")
    with pytest.raises(DataError, match="merge into one user"):
        Roleplay().load(str(path), shots=2, strict=True)
