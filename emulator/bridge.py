"""`python -m emulator bridge`: the template's Kafka mappings feeding functions hosted elsewhere
through the Lambda Invoke API (LocalStack's free tier has no Kafka event source mappings)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from pathlib import Path

from consim.config import Settings

from emulator.invokers import HttpInvoker
from emulator.kafka_mappings import KafkaMappings
from emulator.logs import get_logger
from emulator.template import load_template

log = get_logger("emulator.bridge")


def run_bridge(
    settings: Settings,
    template_path: Path | str,
    overrides: Mapping[str, str],
    invoke_endpoint: str,
    names: Mapping[str, str],
) -> None:
    params = {"KafkaBootstrapServers": settings.kafka_bootstrap, **overrides}
    template = load_template(template_path, params, settings.aws_region)
    invoker = HttpInvoker(invoke_endpoint, settings.aws_region, names)
    mappings = KafkaMappings(
        template, invoker, params["KafkaBootstrapServers"], settings.dead_letter_topic
    ).start()
    log.info(
        "bridge running",
        extra={"invoke_endpoint": invoke_endpoint, "mappings": len(mappings.threads)},
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    mappings.stop()
    log.info("bridge stopped")
