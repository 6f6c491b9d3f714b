"""The participant app without a model: steps, resume, blinding and hardening (CSRF, escaping,
rate limits, headers, loopback by default)."""

from __future__ import annotations

import re
from unittest import mock

import pytest

from fspo_bench.study.ratelimit import RateLimiter

from .run_fixtures import run_cli
from .study_fixtures import SCRIPT, TestClient, planted_app, planted_task, write_study


@pytest.fixture
def study(tmp_path):
    app, store, preparer = planted_app(tmp_path, [planted_task(0, True), planted_task(1, False)])
    token = store.invite()
    with TestClient(app.app) as client:
        yield client, store, token, preparer
    store.close()


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def post(client, token, html, **fields):
    return client.post(f"/s/{token}", data={"csrf": csrf(html), **fields})


def complete_shots(client, token):
    page = client.get(f"/s/{token}").text
    page = post(client, token, page, step="consent").text
    page = post(client, token, page, step="shot", idx="0", choice="a").text
    page = post(client, token, page, step="shot", idx="1", choice="b").text
    assert "Preparing your comparisons" in page
    return client.get(f"/s/{token}").text


def test_a_participant_walks_every_step_and_can_resume(study):
    client, store, token, preparer = study
    page = client.get(f"/s/{token}")
    assert page.status_code == 200 and "CONSENT TEXT PLACEHOLDER" in page.text
    page = post(client, token, page.text, step="consent")
    assert "Preference 1 of 2" in page.text
    page = post(client, token, page.text, step="shot", idx="0", choice="a")
    assert "Preference 2 of 2" in page.text
    resumed = TestClient(client.app).get(f"/s/{token}")  # a new browser, same link
    assert "Preference 2 of 2" in resumed.text
    page = post(client, token, page.text, step="shot", idx="1", choice="b")
    assert "Preparing your comparisons" in page.text and 'http-equiv="refresh"' in page.text
    assert preparer.started == [store.participant(token).key]
    page = client.get(f"/s/{token}")
    assert "Comparison 1 of 2" in page.text
    key = store.participant(token).key
    shots = store.shots(key)
    assert [s.question_id for s in shots] == ["q1", "q2"]
    assert all({s.chosen, s.rejected} <= {"Go camping " + SCRIPT, "Stay at a spa.", "Salad.",
                                          "Steak."} for s in shots)
    assert shots[1].chosen != shots[1].rejected
    page = post(client, token, page.text, step="rate", idx="0", choice="tie")
    page = post(client, token, page.text, step="rate", idx="1", choice="a")
    assert "Thank you!" in page.text
    assert [t.winner for t in store.tasks(key)] == ["tie", "a"]


def test_the_stated_preference_is_the_response_shown_where_the_participant_clicked(study):
    client, store, token, _ = study
    page = client.get(f"/s/{token}").text
    page = post(client, token, page, step="consent").text
    shown_a = re.search(r'id="response-a">\s*<h3>Response A</h3>\s*<div class="text">([^<]*)<',
                        page).group(1)
    post(client, token, page, step="shot", idx="0", choice="a")
    (answer,) = store.shots(store.participant(token).key)
    assert answer.chosen.startswith(shown_a.replace("&lt;", "<").strip()[:10])


def test_a_post_without_the_participants_csrf_token_is_refused(study):
    client, store, token, _ = study
    client.get(f"/s/{token}")
    other = store.invite()
    for data in ({"step": "consent"}, {"step": "consent", "csrf": "forged"},
                 {"step": "consent", "csrf": store.participant(other).csrf}):
        response = client.post(f"/s/{token}", data=data)
        assert response.status_code == 403
    assert store.participant(token).consented is None


def test_answers_to_another_step_or_item_are_ignored(study):
    client, store, token, _ = study
    page = client.get(f"/s/{token}").text
    post(client, token, page, step="shot", idx="0", choice="a")  # not consented yet
    assert store.participant(token).consented is None
    page = post(client, token, page, step="consent").text
    post(client, token, page, step="shot", idx="1", choice="a")  # skips item 0
    post(client, token, page, step="shot", idx="0", choice="method")  # not a choice
    assert store.shots(store.participant(token).key) == []


def test_model_text_is_escaped_and_scripts_are_forbidden(study):
    client, _, token, _ = study
    page = complete_shots(client, token)
    assert "Comparison 1 of 2" in page
    assert SCRIPT not in page and "&lt;script&gt;" in page
    response = client.get(f"/s/{token}")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_pairs_are_blinded(study):
    client, _, token, _ = study
    page = complete_shots(client, token)
    visible = re.sub(r"<style>.*?</style>", "", page, flags=re.S).lower()
    assert "Comparison 1 of 2" in page
    assert not re.search(r"\b(fspo|base)\b", visible)


def test_no_preference_is_offered_only_when_the_study_allows_ties(tmp_path):
    app, store, _ = planted_app(tmp_path, [planted_task(0)], allow_tie=False)
    token = store.invite()
    with TestClient(app.app) as client:
        page = complete_shots(client, token)
        assert "No preference" not in page
        post(client, token, page, step="rate", idx="0", choice="tie")
        assert store.tasks(store.participant(token).key)[0].winner is None
    store.close()


def test_unknown_tokens_get_404_and_the_front_page_lists_nothing(study):
    client, _, token, _ = study
    assert client.get("/s/" + "x" * 24).status_code == 404
    assert client.get("/s/short").status_code == 404
    front = client.get("/")
    assert front.status_code == 404 and token not in front.text


def test_requests_over_the_rate_limit_get_429(tmp_path):
    app, store, _ = planted_app(tmp_path, [planted_task(0)],
                                rate_limit={"requests": 3, "window_s": 60})
    token, other = store.invite(), store.invite()
    with TestClient(app.app) as client:
        assert [client.get(f"/s/{token}").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert client.get(f"/s/{other}").status_code == 200  # limits are per participant
        assert [client.get("/s/" + "y" * 24).status_code for _ in range(4)] == [404] * 3 + [429]
    store.close()


def test_the_sliding_window_forgets_old_hits():
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.allow("k")
    now[0] = 5.0
    assert limiter.allow("k") and not limiter.allow("k") and limiter.allow("other")
    now[0] = 9.9
    assert not limiter.allow("k")
    now[0] = 10.0  # the hit at 0 has left the window, the one at 5 has not
    assert limiter.allow("k") and not limiter.allow("k")


@pytest.mark.parametrize("argv,host,warned", [([], "127.0.0.1", False),
                                              (["--host", "0.0.0.0"], "0.0.0.0", True)])
def test_serve_binds_loopback_unless_told_otherwise(tmp_path, capsys, argv, host, warned):
    study_file = write_study(tmp_path, comparisons=["fewshot vs base"])
    with mock.patch("uvicorn.run") as run:
        assert run_cli("study", "serve", "--study", str(study_file), *argv) == 0
    assert run.call_args.kwargs["host"] == host
    assert ("warning: binding" in capsys.readouterr().err) == warned


def test_invite_prints_links_that_open_the_study_and_export_needs_a_database(tmp_path, capsys):
    study_file = write_study(tmp_path, comparisons=["fewshot vs base"])
    assert run_cli("study", "export", "--study", str(study_file), "--out",
                   str(tmp_path / "out")) == 1
    assert "no study database" in capsys.readouterr().err
    assert run_cli("study", "invite", "--study", str(study_file), "-n", "3",
                   "--base-url", "http://10.0.0.5:8000/") == 0
    links = capsys.readouterr().out.split()
    assert len(links) == 3 and len(set(links)) == 3
    assert all(re.fullmatch(r"http://10\.0\.0\.5:8000/s/[A-Za-z0-9_-]{24}", link)
               for link in links)
    app, store, _ = planted_app(tmp_path, [planted_task(0)])
    with TestClient(app.app) as client:
        assert all(client.get(link.split(":8000")[1]).status_code == 200 for link in links)
    assert len(store.participant_keys()) == 3
    store.close()
