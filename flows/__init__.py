"""Prefect flows: one per stage group plus ``knowledge_refresh`` chaining them; and the ``cptflow`` command."""
