"""Runs template.yaml on one machine, as API Gateway, Lambda, Kafka event source mappings,
EventBridge schedules and the X-Ray daemon would: `python -m emulator serve`."""
