"""fspo_bench.trainers: see the README of this folder."""
