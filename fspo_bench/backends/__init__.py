"""Built-in model backends (registered through :mod:`fspo_bench.backends.plugin`)."""
