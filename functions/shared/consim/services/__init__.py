"""Use cases: what the handlers call. They take their adapters as arguments."""
