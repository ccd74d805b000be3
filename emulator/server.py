"""`python -m emulator serve`: every part of the emulator started, and stopped cleanly on
SIGTERM/SIGINT (Kafka mappings first, then the HTTP server, then the workers)."""

from __future__ import annotations

import asyncio
import errno
import signal
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from consim.config import Settings

from emulator.apikeys import ApiKeyChecker, DynamoDbApiKeys
from emulator.gateway import build_app
from emulator.invokers import LocalInvoker
from emulator.kafka_mappings import KafkaMappings
from emulator.logs import get_logger
from emulator.runtime import Runtime, prewarm_from_env
from emulator.schedules import Scheduler
from emulator.template import load_template, native_overrides
from emulator.tracing import SegmentEmitter
from emulator.xray_daemon import XRayDaemon

log = get_logger("emulator.server")


class PortInUse(RuntimeError):
    pass


class Emulator:
    """The running parts, so tests can start and stop an emulator inside their own loop."""

    def __init__(
        self,
        settings: Settings,
        template_path: Path | str,
        overrides: Mapping[str, str] | None = None,
        api_keys: ApiKeyChecker | None = None,
        with_daemon: bool = True,
    ) -> None:
        self.settings = settings
        params = {**native_overrides(settings), **(overrides or {})}
        self.template = load_template(template_path, params, settings.aws_region)
        self.api_keys = api_keys or DynamoDbApiKeys(settings)
        self.with_daemon = with_daemon
        self.daemon: XRayDaemon | None = None
        self.runtime: Runtime | None = None
        self.runner: web.AppRunner | None = None
        self.scheduler: Scheduler | None = None
        self.kafka: KafkaMappings | None = None
        self._prewarming: asyncio.Task | None = None

    async def start(self) -> Emulator:
        s = self.settings
        if self.with_daemon:
            try:
                self.daemon = await XRayDaemon(
                    s.xray_daemon_address, s.xray_endpoint, s.aws_region
                ).start()
            except OSError as exc:
                raise PortInUse(
                    f"X-Ray daemon address {s.xray_daemon_address} (AWS_XRAY_DAEMON_ADDRESS) "
                    f"is not free: {exc.strerror}"
                ) from exc
        self.runtime = Runtime(self.template, s, emitter=SegmentEmitter(s.xray_daemon_address))
        self.runner = web.AppRunner(build_app(self.runtime, self.api_keys, s), access_log=None)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, s.gateway_host, s.gateway_port).start()
        except OSError as exc:
            await self.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"gateway port {s.gateway_host}:{s.gateway_port} (GATEWAY_PORT) is in use"
                ) from exc
            raise
        prewarm = prewarm_from_env()
        if prewarm > 0:
            self._prewarming = asyncio.create_task(self.runtime.prewarm(prewarm))
        self.scheduler = Scheduler(self.runtime).start()
        invoker = LocalInvoker(self.runtime, asyncio.get_running_loop())
        self.kafka = KafkaMappings(
            self.template, invoker, s.kafka_bootstrap, s.dead_letter_topic
        ).start()
        log.info(
            "emulator ready",
            extra={
                "gateway": f"http://{s.gateway_host}:{s.gateway_port}",
                "functions": sorted(self.template.functions),
                "kafka_mappings": len(self.kafka.threads),
                "template": str(self.template.path),
            },
        )
        return self

    async def close(self) -> None:
        if self._prewarming is not None:
            self._prewarming.cancel()
            await asyncio.gather(self._prewarming, return_exceptions=True)
        if self.kafka is not None:
            await asyncio.to_thread(self.kafka.stop)
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.runtime is not None:
            await self.runtime.close()
        if self.daemon is not None:
            await self.daemon.close()


async def serve(settings: Settings, template_path: Path | str, overrides: Mapping[str, str]):
    emulator = await Emulator(settings, template_path, overrides).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("emulator stopping")
    await emulator.close()
    log.info("emulator stopped")
