"""Make real third-party plugin distributions on disk for tests.

Each plugin is a module plus a ``*.dist-info`` folder with an ``entry_points.txt``, placed in a
folder that is put on ``sys.path`` (or PYTHONPATH for subprocesses): importlib.metadata finds it
exactly as it finds an installed package.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_plugin(site: Path, dist: str, module: str, code: str) -> None:
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[fspo_bench]\n{module} = {module}\n")


GOOD_METHOD = """
from fspo_bench import GenerationRequest, Method, hookimpl

class Echo(Method):
    name = "{name}"
    description = "test method"

    def build_request(self, query, params):
        return GenerationRequest(params=params, prompt=query.question)

@hookimpl
def register_methods(register):
    register(Echo)
"""
