"""The live page: open an account, pay, and watch each payment's status arrive as it happens.

Mounted by the gateway at `/_live` (and `/` redirects here). The statuses come through the same
path as everyone's notifications: the page asks `POST /_live/watch`, which subscribes a webhook
on the person's account through the API, pointing back at this gateway's `/_live/hooks/<channel>`.
Each webhook that arrives is verified with its Standard Webhooks secret (which never reaches the
browser) and fanned out to the page over server-sent events (`/_live/events?channel=`).

Where the browser has a push service, the page also subscribes it for Web Push (service worker
`/_live/sw.js`); headless browsers and machines without one just skip that part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from consim.config import Settings
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from emulator.logs import get_logger

log = get_logger("emulator.live")

MOUNT = "/_live"
_HISTORY = 200  # statuses a page that (re)connects late is given first
_KEEPALIVE_SECONDS = 15.0
_MAX_CHANNELS = 1000
_CLOSING = object()  # put on a listener's queue: the stream ends


@dataclass
class Channel:
    secret: str
    subscription_id: str
    account_id: str
    history: deque = field(default_factory=lambda: deque(maxlen=_HISTORY))
    seen: set[str] = field(default_factory=set)  # webhook-ids: a re-sent message shows once
    listeners: set[asyncio.Queue] = field(default_factory=set)

    def publish(self, message: dict[str, Any]) -> None:
        self.history.append(message)
        for queue in self.listeners:
            queue.put_nowait(message)


CHANNELS = web.AppKey("channels", dict)
SETTINGS = web.AppKey("settings", Settings)
SESSION = web.AppKey("session", aiohttp.ClientSession)


def _gateway_origin(settings: Settings) -> str:
    host = settings.gateway_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.gateway_port}"


def _local_api_key(settings: Settings) -> str:
    """The native stack's own key, offered in the form so a local visitor can start at once."""
    try:
        return (settings.state_dir / "api-key").read_text().strip()
    except OSError:
        return ""


async def _page(request: web.Request) -> web.Response:
    key = _local_api_key(request.app[SETTINGS])
    html = PAGE.replace("__API_KEY__", json.dumps(key))
    return web.Response(text=html, content_type="text/html")


async def _service_worker(request: web.Request) -> web.Response:
    return web.Response(
        text=SERVICE_WORKER,
        content_type="application/javascript",
        headers={"Cache-Control": "no-cache"},
    )


async def _watch(request: web.Request) -> web.Response:
    """Subscribe a webhook on the caller's account, aimed at a fresh channel of this page."""
    try:
        body = await request.json()
        account_id = str(body["account_id"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"detail": "send {account_id}"}, status=400)
    channels: dict[str, Channel] = request.app[CHANNELS]
    if len(channels) >= _MAX_CHANNELS:
        return web.json_response({"detail": "too many live channels"}, status=503)

    settings = request.app[SETTINGS]
    channel = uuid.uuid4().hex
    hook_url = f"{_gateway_origin(settings)}{MOUNT}/hooks/{channel}"
    async with request.app[SESSION].post(
        f"{settings.api_url}/subscriptions",
        json={"kind": "webhook", "account_id": account_id, "url": hook_url},
        headers={"x-api-key": request.headers.get("x-api-key", "")},
    ) as answer:
        payload = await answer.read()
        if answer.status != 201:
            return web.Response(
                status=answer.status,
                body=payload,
                content_type=answer.content_type or "application/json",
            )
    subscription = json.loads(payload)
    channels[channel] = Channel(subscription["secret"], subscription["id"], account_id)
    log.info(
        "live channel opened",
        extra={"channel": channel, "account_id": account_id, "subscription_id": subscription["id"]},
    )
    return web.json_response({"channel": channel, "subscription_id": subscription["id"]})


async def _hook(request: web.Request) -> web.Response:
    channel = request.app[CHANNELS].get(request.match_info["channel"])
    if channel is None:
        # 410 tells the notifier this receiver is gone, so it drops the subscription.
        return web.Response(status=410, text="no such live channel")
    body = await request.read()
    try:
        message = Webhook(channel.secret).verify(body, dict(request.headers))
    except WebhookVerificationError as exc:
        log.warning("live hook refused", extra={"reason": str(exc)})
        return web.Response(status=401, text=str(exc))
    message_id = request.headers["webhook-id"]
    if message_id not in channel.seen:
        channel.seen.add(message_id)
        channel.publish(message)
    return web.Response(status=204)


def _sse(message: dict[str, Any]) -> bytes:
    return f"event: status\ndata: {json.dumps(message)}\n\n".encode()


async def _events(request: web.Request) -> web.StreamResponse:
    channel = request.app[CHANNELS].get(request.query.get("channel", ""))
    if channel is None:
        return web.Response(status=404, text="no such live channel")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue = asyncio.Queue()
    channel.listeners.add(queue)
    try:
        await response.write(b": connected\n\n")
        for message in list(channel.history):
            await response.write(_sse(message))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), _KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if message is _CLOSING:
                break
            await response.write(_sse(message))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        channel.listeners.discard(queue)
    return response


async def _open_session(app: web.Application) -> None:
    app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))


async def _end_streams(app: web.Application) -> None:
    # Open event streams would otherwise hold the gateway's shutdown until its timeout.
    for channel in app[CHANNELS].values():
        for queue in channel.listeners:
            queue.put_nowait(_CLOSING)


async def _close(app: web.Application) -> None:
    with contextlib.suppress(Exception):
        await app[SESSION].close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[CHANNELS] = {}
    app.on_startup.append(_open_session)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_close)
    app.router.add_get("/", _page)
    app.router.add_get("/sw.js", _service_worker)
    app.router.add_post("/watch", _watch)
    app.router.add_post("/hooks/{channel}", _hook)
    app.router.add_get("/events", _events)
    return app


SERVICE_WORKER = """\
// Shows each Web Push notification and hands it to the open live pages.
self.addEventListener('push', (event) => {
  const status = event.data ? event.data.json() : {};
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({type: 'window'});
    pages.forEach((page) => page.postMessage({source: 'webpush', status}));
    await self.registration.showNotification(
      `Payment ${status.status || 'update'}`,
      {body: `${status.amount} ${status.currency} - ${status.payment_id}`, tag: status.payment_id});
  })());
});
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Concurrency Simulator: live payments</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; }
  fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 0 0 1rem; }
  label { margin-right: 1rem; }
  input { font: inherit; padding: .2rem .4rem; }
  button { font: inherit; padding: .25rem .9rem; cursor: pointer; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eee; }
  td.status { font-weight: 600; }
  td.status[data-status=authorized] { color: #137333; }
  td.status[data-status=declined], td.status[data-status=failed] { color: #b3261e; }
  td.status[data-status=pending] { color: #8a6d00; }
  #log { color: #555; font-size: 13px; white-space: pre-wrap; }
  code { font-size: 13px; }
</style>
</head>
<body>
<h1>Live payments</h1>
<fieldset>
  <legend>1. Who you are</legend>
  <label>API key <input id="api-key" size="48" autocomplete="off"></label>
</fieldset>
<fieldset>
  <legend>2. An account</legend>
  <label>Currency <input id="currency" value="EUR" size="4"></label>
  <label>Limit <input id="limit" type="number" value="100000" min="0"></label>
  <button id="open-account">Open account</button>
  <span id="account"></span>
</fieldset>
<fieldset>
  <legend>3. Payments</legend>
  <label>Amount (minor units) <input id="amount" type="number" value="1250" min="1"></label>
  <label>Description <input id="description" value="coffee"></label>
  <button id="pay" disabled>Pay</button>
</fieldset>
<table>
  <thead><tr>
    <th>payment</th><th>amount</th><th>status</th><th>history (ms after the request)</th>
  </tr></thead>
  <tbody id="payments"></tbody>
</table>
<p id="live">Live updates: not connected.</p>
<p id="push">Web Push: not tried.</p>
<div id="log"></div>
<script>
const $ = (id) => document.getElementById(id);
$('api-key').value = __API_KEY__;
let account = null;
const rows = new Map();   // payment id -> {row, sentAt}
const early = new Map();  // statuses that arrived before the POST answered

function say(text) { $('log').textContent = text + '\\n' + $('log').textContent; }

async function api(method, path, body, headers = {}) {
  const response = await fetch(path, {
    method,
    headers: {
      'content-type': 'application/json', 'x-api-key': $('api-key').value.trim(), ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const why = (json && (json.detail || json.message)) || text;
    throw new Error(`${method} ${path}: ${response.status} ${why}`);
  }
  return json;
}

function show(status, source) {
  const entry = rows.get(status.payment_id);
  if (!entry) {
    const list = early.get(status.payment_id) || [];
    list.push([status, source, performance.now()]);
    early.set(status.payment_id, list);
    return;
  }
  apply(entry, status, source, performance.now());
}

function apply(entry, status, source, at) {
  const cell = entry.row.querySelector('td.status');
  // A final status is never replaced by a late `pending`.
  const shown = cell.dataset.status;
  if (shown && shown !== 'pending' && status.status === 'pending') return;
  cell.textContent = status.status;
  cell.dataset.status = status.status;
  const ms = Math.round(at - entry.sentAt);
  entry.row.querySelector('td.history').textContent += `${status.status} +${ms} (${source})  `;
}

function connect(channel) {
  const source = new EventSource(`./events?channel=${encodeURIComponent(channel)}`);
  const state = (text) => { $('live').textContent = `Live updates: ${text}.`; };
  source.addEventListener('open', () => state('connected (signed webhooks, server-sent events)'));
  source.addEventListener('error', () => state('reconnecting'));
  source.addEventListener('status', (event) => show(JSON.parse(event.data), 'webhook'));
}

async function registerPush(accountId) {
  try {
    if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
      throw new Error('this browser has no Push API');
    }
    const registration = await navigator.serviceWorker.register('./sw.js');
    await navigator.serviceWorker.ready;
    const {public_key} = await api('GET', '/vapid-public-key');
    const b64 = public_key.replace(/-/g, '+').replace(/_/g, '/');
    const key = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const subscription = await Promise.race([
      registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key}),
      new Promise((_, reject) => setTimeout(
        () => reject(new Error('no push service answered')), 5000)),
    ]);
    await api('POST', '/subscriptions',
      {kind: 'webpush', account_id: accountId, subscription: subscription.toJSON()});
    navigator.serviceWorker.addEventListener(
      'message', (event) => show(event.data.status, 'web push'));
    $('push').textContent = 'Web Push: subscribed.';
  } catch (error) {
    $('push').textContent =
      `Web Push: unavailable here (${error.message}); the live updates do not need it.`;
  }
}

$('open-account').addEventListener('click', async () => {
  try {
    account = await api('POST', '/accounts',
      {currency: $('currency').value.trim(), limit: Number($('limit').value)});
    $('account').innerHTML = `<code>${account.id}</code>`;
    const watch = await api('POST', './watch', {account_id: account.id});
    connect(watch.channel);
    $('pay').disabled = false;
    say(`account ${account.id} opened; following it on channel ${watch.channel}`);
    registerPush(account.id);
  } catch (error) { say(error.message); }
});

$('pay').addEventListener('click', async () => {
  const sentAt = performance.now();
  try {
    const payment = await api('POST', '/payments',
      {account_id: account.id, amount: Number($('amount').value), currency: account.currency,
       description: $('description').value},
      {'Idempotency-Key': crypto.randomUUID()});
    const row = document.createElement('tr');
    row.dataset.paymentId = payment.id;
    row.innerHTML = `<td><code>${payment.id}</code></td>` +
      `<td>${payment.amount} ${payment.currency}</td>` +
      `<td class="status">requested</td><td class="history"></td>`;
    $('payments').prepend(row);
    const entry = {row, sentAt};
    rows.set(payment.id, entry);
    const waiting = early.get(payment.id) || [];
    waiting.forEach(([status, source, at]) => apply(entry, status, source, at));
    early.delete(payment.id);
    say(`payment ${payment.id}: HTTP 201 after ${Math.round(performance.now() - sentAt)} ms`);
  } catch (error) { say(error.message); }
});
</script>
</body>
</html>
"""
