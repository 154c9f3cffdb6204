"""The backends that ship with the core package (each registers through the plugin hook)."""
