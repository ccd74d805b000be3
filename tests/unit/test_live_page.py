"""The live page's server side: watching an account, verifying hooks, fanning out over SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from consim.adapters.webhooks import new_secret, signed_headers
from consim.config import Settings

from emulator import live

pytestmark = pytest.mark.unit


def fake_api(calls: list) -> web.Application:
    """Stands in for POST /subscriptions: answers like the API, remembers what it was asked."""

    async def subscribe(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append((request.headers.get("x-api-key"), body))
        if request.headers.get("x-api-key") != "good-key":
            return web.json_response({"title": "Forbidden"}, status=403)
        return web.json_response(
            {"id": "sub-1", "kind": "webhook", "secret": SECRET, **body}, status=201
        )

    app = web.Application()
    app.router.add_post("/subscriptions", subscribe)
    return app


SECRET = new_secret()


@contextlib.asynccontextmanager
async def scenario(monkeypatch, tmp_path):
    calls: list = []
    async with TestServer(fake_api(calls)) as api_server:
        monkeypatch.setenv("API_URL", str(api_server.make_url("")).rstrip("/"))
        monkeypatch.setenv("CONSIM_STATE_DIR", str(tmp_path))
        (tmp_path / "api-key").write_text("good-key\n")
        async with TestClient(TestServer(live.create_app(Settings()))) as page:
            yield calls, page


def run(coro):
    return asyncio.run(coro)


def test_the_page_is_served_with_the_local_key(monkeypatch, tmp_path):
    async def go():
        async with scenario(monkeypatch, tmp_path) as (_, page):
            response = await page.get("/")
            text = await response.text()
            worker = await page.get("/sw.js")
            return response.status, text, worker.status, worker.content_type

    status, text, worker_status, worker_type = run(go())
    assert status == 200 and '"good-key"' in text and "EventSource" in text
    assert worker_status == 200 and worker_type == "application/javascript"


def test_watching_subscribes_a_webhook_back_to_the_page(monkeypatch, tmp_path):
    async def go():
        async with scenario(monkeypatch, tmp_path) as (calls, page):
            response = await page.post(
                "/watch", json={"account_id": "acc-1"}, headers={"x-api-key": "good-key"}
            )
            return calls, response.status, await response.json()

    calls, status, body = run(go())
    assert status == 200 and body["subscription_id"] == "sub-1"
    ((key, asked),) = calls
    assert key == "good-key"
    assert asked["kind"] == "webhook" and asked["account_id"] == "acc-1"
    assert asked["url"].endswith(f"/_live/hooks/{body['channel']}")


def test_the_apis_refusal_is_passed_on(monkeypatch, tmp_path):
    async def go():
        async with scenario(monkeypatch, tmp_path) as (_, page):
            response = await page.post(
                "/watch", json={"account_id": "acc-1"}, headers={"x-api-key": "bad"}
            )
            return response.status

    assert run(go()) == 403


def test_verified_hooks_reach_the_page_once_and_forged_ones_never(monkeypatch, tmp_path):
    async def go():
        async with scenario(monkeypatch, tmp_path) as (_, page):
            watch = await page.post(
                "/watch", json={"account_id": "acc-1"}, headers={"x-api-key": "good-key"}
            )
            channel = (await watch.json())["channel"]
            events = await page.get(f"/events?channel={channel}")
            assert (await events.content.readline()).startswith(b": connected")

            pending = json.dumps({"payment_id": "p-1", "status": "pending"})
            final = json.dumps({"payment_id": "p-1", "status": "authorized"})
            forged = json.dumps({"payment_id": "p-1", "status": "declined"})
            answers = []
            for message_id, payload, secret in (
                ("m1", pending, SECRET),
                ("m1", pending, SECRET),  # the same message again: shown once
                ("m2", forged, new_secret()),
                ("m3", final, SECRET),
            ):
                hook = await page.post(
                    f"/hooks/{channel}",
                    data=payload,
                    headers=signed_headers(secret, message_id, payload),
                )
                answers.append(hook.status)
            unknown = await page.post("/hooks/nope", data=pending)

            seen = []
            while len(seen) < 2:
                line = (await events.content.readline()).decode().strip()
                if line.startswith("data: "):
                    seen.append(json.loads(line[len("data: ") :])["status"])
            events.close()
            return answers, unknown.status, seen

    answers, unknown, seen = run(go())
    assert answers == [204, 204, 401, 204]
    assert unknown == 410
    assert seen == ["pending", "authorized"]
