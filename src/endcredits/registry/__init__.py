"""Registry: people, works, credits, lineage and identity."""
