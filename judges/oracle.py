"""The ``oracle`` judge: exact verdicts for responses whose attributes are known.

A comparison's ``meta`` says which domain it comes from and what each response was written for
(``domain``, ``a_attr``, ``b_attr``: a Reviews style, an ELIX level, a Roleplay view). The verdict
is the domain's own labelling rule, ``Domain.oracle(user, a_attr, b_attr)``, the rule the
shipped labels were made with; the text of the responses is never read. When the rule is
indifferent (it returns None) the verdict is ``"tie"``. Generated text has no known attributes,
so the oracle cannot judge it: such comparisons are invalid, with the reason in ``raw``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fspo_bench.errors import UnknownNameError
from fspo_bench.judge import Comparison, Judge
from fspo_bench.records import Judgment

UNLABELLED = ("the oracle judge only judges labelled pairs: comparisons whose meta gives the "
              "domain and the attribute each response was written for (domain, a_attr, b_attr); "
              "this one has {missing}")


class OracleJudge(Judge):
    name = "oracle"
    description = (
        "Exact, for labelled pairs only: applies the domain's labelling rule to the attributes "
        "the two responses were written for (meta domain, a_attr, b_attr; indifferent = tie); "
        "the text is never read, and comparisons without attributes are invalid."
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._domains: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        return {"judge": self.name}

    def _domain(self, name: str) -> Any:
        if name not in self._domains:
            from fspo_bench import plugins

            self._domains[name] = plugins.get("domain", name)()
        return self._domains[name]

    def judge(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        return [self._one(c) for c in comparisons]

    def _one(self, c: Comparison) -> Judgment:
        missing = [k for k in ("domain", "a_attr", "b_attr") if c.meta.get(k) is None]
        if missing:
            return self._result(c, None, UNLABELLED.format(
                missing=f"no {', '.join(missing)}"))
        domain_name = str(c.meta["domain"])
        a_attr, b_attr = c.meta["a_attr"], c.meta["b_attr"]
        try:
            domain = self._domain(domain_name)
        except UnknownNameError as exc:
            return self._result(c, None, f"the oracle judge cannot judge this pair: {exc}")
        try:
            verdict = domain.oracle(c.user, a_attr, b_attr)
        except NotImplementedError:
            return self._result(c, None, f"domain {domain_name!r} has no exact oracle rule")
        if verdict not in ("a", "b", None):
            return self._result(c, None, f"domain {domain_name!r} oracle returned {verdict!r}")
        winner = verdict or "tie"
        why = "the rule is indifferent" if verdict is None else f"prefers {verdict}"
        raw = (f"oracle[{domain_name}]: user {c.user.id!r}, a_attr={a_attr!r}, "
               f"b_attr={b_attr!r}: {why}; Verdict: {winner}")
        return self._result(c, winner, raw)

    def _result(self, c: Comparison, winner: str | None, raw: str) -> Judgment:
        return Judgment(judge=self.name, user=c.user.id, question=c.question, a=c.a, b=c.b,
                        winner=winner, raw=raw, valid=winner is not None,
                        meta={**c.meta, "attempts": 1})
