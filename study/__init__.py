"""The human-study kit: ``fspo-bench study invite | serve | export`` (docs/study.md).

A built-in plugin (entry point ``study = "fspo_bench.study.plugin"``). Real participants state a
few preferences in a small web app, then rate blinded pairs of responses that methods generated
from those preferences; the export writes the ratings as ``Judgment`` records, so the run
statistics apply, and compares them with LLM judges on the same pairs.
"""
