"""The built-in judges plugin: ``pairwise``, ``oracle`` and ``proxy``.

Importing it imports nothing heavy (no torch, transformers or litellm): the judge model's backend
and the embedding model load only when a judge first judges.
"""

from __future__ import annotations

from fspo_bench import hookimpl

from .oracle import OracleJudge
from .pairwise import PairwiseJudge
from .proxy import ProxyJudge


@hookimpl
def register_judges(register):
    register(PairwiseJudge)
    register(OracleJudge)
    register(ProxyJudge)
