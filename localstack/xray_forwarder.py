"""The X-Ray daemon LocalStack's free tier lacks: UDP segments from the functions' containers,
forwarded to moto's X-Ray API, where the trace viewer reads them (XRAY_ENDPOINT).

Runs in the `xray` service of docker-compose.yml with the repository mounted at /src; it is the
emulator's own daemon, listening on all interfaces of the container.
"""

from __future__ import annotations

import asyncio
import os

from emulator.xray_daemon import XRayDaemon


async def main() -> None:
    daemon = XRayDaemon(
        os.environ.get("LISTEN_ADDRESS", "0.0.0.0:2000"),
        os.environ.get("XRAY_API", "http://moto:5000"),
        os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    await daemon.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
