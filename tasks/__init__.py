"""fspo_bench.tasks: see the README of this folder."""
