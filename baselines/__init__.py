"""fspo_bench.baselines: see the README of this folder."""
