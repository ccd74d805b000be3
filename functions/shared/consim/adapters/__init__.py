"""Adapters: the event store (in memory, Postgres), the outbox, Kafka, DynamoDB."""
