"""fspo_bench.judges: see the README of this folder."""
