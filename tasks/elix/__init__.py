"""The elix domain plugin."""
