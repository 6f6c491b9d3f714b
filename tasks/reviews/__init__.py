"""The reviews domain plugin."""
