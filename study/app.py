"""The participant web app (Starlette): server-rendered pages, no script, nothing external.

``GET /s/{token}`` shows the participant's next step: consent, a preference question, the
"preparing your comparisons" page (it refreshes itself while the responses are generated), a
blinded pair to rate, or the thank-you page. ``POST /s/{token}`` stores one answer and redirects
back (post/redirect/get), so reloading never answers twice and a participant can leave and come
back at any time.

Hardening: every form carries the participant's CSRF token (checked on POST, 403 otherwise);
all text, model output included, is escaped by Jinja2 autoescaping and a Content-Security-Policy
forbids scripts outright; each participant (and all unknown tokens together) is rate-limited
with a sliding window (429); responses are never cached and never send a referrer (the token is
in the URL).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from fspo_bench.sampling import rng_for

from .config import StudyConfig
from .items import StudyItems
from .prepare import Preparer
from .ratelimit import RateLimiter
from .store import Participant, ShotAnswer, StudyStore, Task

TEMPLATES = Path(__file__).parent / "templates"
REFRESH_S = 3
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
INVALID_TOKEN_BUCKET = "invalid-token"


def shown_first(key: str, question_id: str) -> str:
    """Which of a preference question's two responses a participant sees as A ('0' or '1')."""
    return str(int(rng_for("study-shot-side", key, question_id).random() < 0.5))


def current_step(config: StudyConfig, participant: Participant, shots: list[ShotAnswer],
                 tasks: list[Task]) -> str:
    """consent, shot, preparing, error, rate or done."""
    if participant.consented is None:
        return "consent"
    if len(shots) < config.shots:
        return "shot"
    if not tasks:
        return "error" if participant.error else "preparing"
    return "rate" if any(t.winner is None for t in tasks) else "done"


class StudyApp:
    """The app's state and handlers; ``app`` is the ASGI application."""

    def __init__(self, config: StudyConfig, store: StudyStore, items: StudyItems,
                 preparer: Preparer):
        self.config, self.store, self.items, self.preparer = config, store, items, preparer
        self.limiter = RateLimiter(config.rate_limit, config.rate_window_s)
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
        self.app = Starlette(routes=[
            Route("/", self.home),
            Route("/s/{token}", self.page, methods=["GET", "POST"]),
        ])

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(title=self.config.title, **context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def message(self, heading: str, text: str, status: int) -> HTMLResponse:
        return self.render("message.html", status, heading=heading, text=text)

    async def home(self, request: Request) -> Response:
        return self.message("Invitation needed",
                            "Please open the personal link you were sent to take part.", 404)

    async def page(self, request: Request) -> Response:
        participant = self.store.participant(request.path_params["token"])
        bucket = participant.key if participant else INVALID_TOKEN_BUCKET
        if not self.limiter.allow(bucket):
            return self.message("Too many requests",
                                "Please wait a minute, then reload this page.", 429)
        if participant is None:
            return self.message("Unknown link",
                                "This link is not valid. Please check the link you were sent.",
                                404)
        if request.method == "POST":
            form = await request.form()
            if not hmac.compare_digest(str(form.get("csrf", "")), participant.csrf):
                return self.message("Form expired",
                                    "Please go back to your link and answer again.", 403)
            self.answer(participant, {k: str(v) for k, v in form.items()})
            return RedirectResponse(request.url.path, status_code=303, headers=HEADERS)
        return self.show(participant)

    def answer(self, participant: Participant, form: dict[str, str]) -> None:
        """Store one answer; an answer to anything but the current step is ignored."""
        key = participant.key
        shots, tasks = self.store.shots(key), self.store.tasks(key)
        step = current_step(self.config, participant, shots, tasks)
        if form.get("step") != step:
            return
        if step == "consent":
            self.store.consent(key)
        elif step == "shot" and form.get("choice") in ("a", "b") and (
                form.get("idx") == str(len(shots))):
            item = self.items.shots[len(shots)]
            first = shown_first(key, item.question_id)
            a, b = item.responses if first == "0" else item.responses[::-1]
            chosen, rejected = (a, b) if form["choice"] == "a" else (b, a)
            self.store.add_shot(key, ShotAnswer(len(shots), item.question_id, item.question,
                                                chosen, rejected,
                                                "chosen" if chosen == a else "rejected"))
        elif step == "rate":
            allowed = ("a", "b", "tie") if self.config.allow_tie else ("a", "b")
            task = next(t for t in tasks if t.winner is None)
            if form.get("choice") in allowed and form.get("idx") == str(task.idx):
                self.store.rate(key, task.idx, form["choice"])
        elif step == "error":
            self.store.set_error(key, None)

    def show(self, participant: Participant) -> HTMLResponse:
        key = participant.key
        shots, tasks = self.store.shots(key), self.store.tasks(key)
        step = current_step(self.config, participant, shots, tasks)
        common = {"csrf": participant.csrf, "step": step}
        if step == "consent":
            return self.render("consent.html", consent=self.config.consent,
                               instructions=self.config.instructions,
                               n_shots=self.config.shots, **common)
        if step == "shot":
            item = self.items.shots[len(shots)]
            a, b = (item.responses if shown_first(key, item.question_id) == "0"
                    else item.responses[::-1])
            return self.render("shot.html", idx=len(shots), total=self.config.shots,
                               question=item.question, a=a, b=b, **common)
        if step == "preparing":
            self.preparer.start(key)
            return self.render("preparing.html", refresh=REFRESH_S, **common)
        if step == "error":
            return self.render("error.html", **common)
        if step == "rate":
            task = next(t for t in tasks if t.winner is None)
            return self.render("rate.html", task=task, number=task.idx + 1, total=len(tasks),
                               allow_tie=self.config.allow_tie, **common)
        return self.render("done.html", total=len(tasks), **common)
