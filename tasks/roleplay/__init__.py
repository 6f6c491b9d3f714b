"""The roleplay domain plugin."""
