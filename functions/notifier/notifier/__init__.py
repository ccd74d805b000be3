"""The notifier: turns payment status events from Kafka into Web Push messages and webhooks."""
