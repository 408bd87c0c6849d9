"""pytest plugin (placeholder while the kit is written)."""
