"""A simulated third-party payment provider: its behaviour (knobs) and its ledger."""
