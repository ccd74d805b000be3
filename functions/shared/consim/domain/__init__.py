"""The payments domain: events, aggregates and the rules between them. No I/O lives here."""
