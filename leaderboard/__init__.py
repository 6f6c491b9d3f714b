"""fspo_bench.leaderboard: see the README of this folder."""
