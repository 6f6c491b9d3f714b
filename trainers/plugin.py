"""The trainers plugin: the ``train`` command and the ``fspo`` / ``fspo-rat`` methods.

Entry point (pyproject): ``trainers = "fspo_bench.trainers.plugin"``. Importing this module
imports neither torch nor transformers.
"""

from __future__ import annotations

from fspo_bench import hookimpl
from fspo_bench.trainers.methods import FSPOMethod, FSPORATMethod


@hookimpl
def register_methods(register):
    register(FSPOMethod)
    register(FSPORATMethod)


@hookimpl
def register_commands(cli):
    from fspo_bench.trainers.cli import add_train_command

    add_train_command(cli)
