"""The HTTP face of the native stack: API Gateway for the template's Api events, the Lambda Invoke
API, the emulator's admin routes, and the pages other modules contribute (live page, traces).

The gateway's own answers are API Gateway's: an unknown path is 403 {"message": "Missing
Authentication Token"}, a missing or unknown key 403 {"message": "Forbidden"}, a function error or
an unreadable answer 502 {"message": "Internal server error"}, unless the Api's GatewayResponses
in the template say otherwise (emulator.gateway_responses). An unknown path answers as the Api
with the most routes would.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import uuid
from collections import Counter

from aiohttp import web
from consim.config import Settings

from emulator import gateway_responses, invoke
from emulator.api_events import HttpRequest, http_response, proxy_event
from emulator.apikeys import ApiKeyChecker
from emulator.invoke import RUNTIME
from emulator.logs import get_logger
from emulator.routes import Route, RouteTable
from emulator.runtime import FunctionNotFound, Runtime, Throttled
from emulator.tracing import TraceHeader, new_trace_id

log = get_logger("emulator.gateway")

# Pages other modules serve on the gateway: (module, mount point). Each module offers
# create_app(settings) -> aiohttp.web.Application, with routes relative to its mount point.
INTEGRATION_TIMEOUT_S = 29.0
PAGE_MODULES = (("emulator.live", "/_live"), ("emulator.trace_pages", "/_traces"))


def route_table(runtime: Runtime) -> RouteTable:
    return RouteTable(
        [
            Route(spec.logical_id, event)
            for spec in runtime.template.functions.values()
            for event in spec.api_events
        ]
    )


def _json(status: int, document: dict, headers: dict | None = None) -> web.Response:
    return web.json_response(document, status=status, headers=headers)


class ApiGateway:
    def __init__(self, runtime: Runtime, api_keys: ApiKeyChecker) -> None:
        self.runtime = runtime
        self.api_keys = api_keys
        self.routes = route_table(runtime)
        apis = Counter(route.event.api_id for route in self.routes.routes)
        self._busiest_api = apis.most_common(1)[0][0] if apis else ""
        self._outliving: set[asyncio.Future] = set()  # invocations past the API's timeout

    def _refusal(
        self, api_id: str, response_type: str, request_id: str, headers: dict | None = None
    ) -> web.Response:
        responses = self.runtime.template.gateway_responses.get(api_id, {})
        answer = gateway_responses.answer(responses, response_type, request_id)
        response = web.Response(status=answer.status, body=answer.body)
        for name, value in {**answer.headers, **(headers or {})}.items():
            response.headers[name] = value
        return response

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        match = self.routes.match(request.method, request.path)
        if match is None:
            return self._refusal(self._busiest_api, "MISSING_AUTHENTICATION_TOKEN", request_id)

        api_id = match.route.event.api_id
        api_key = request.headers.get("x-api-key")
        if match.route.event.api_key_required and not (
            api_key and await self.api_keys.is_known(api_key)
        ):
            return self._refusal(api_id, "INVALID_API_KEY", request_id)

        event = proxy_event(await self._http_request(request), match, request_id, api_key)
        # The caller's trace continues; otherwise the function's invocation starts one.
        trace_header = request.headers.get("X-Amzn-Trace-Id")
        if trace_header is None:
            trace_header = TraceHeader(new_trace_id()).render()
        headers = {"x-amzn-RequestId": request_id, "X-Amzn-Trace-Id": trace_header}
        invocation = asyncio.ensure_future(
            self.runtime.invoke(match.route.function, event, trace_header)
        )
        # API Gateway stops waiting at its integration timeout; the function runs on.
        done, _ = await asyncio.wait({invocation}, timeout=INTEGRATION_TIMEOUT_S)
        if not done:
            self._outliving.add(invocation)
            invocation.add_done_callback(self._outliving.discard)
            return self._refusal(api_id, "INTEGRATION_TIMEOUT", request_id, headers)
        try:
            result = invocation.result()
        except Throttled:
            return self._refusal(api_id, "THROTTLED", request_id, headers)
        if not result.ok:
            log.warning(
                "function error behind the api",
                extra={
                    "function": match.route.function,
                    "request_id": result.request_id,
                    "error_type": result.error_type,
                },
            )
            return self._refusal(api_id, "DEFAULT_5XX", request_id, headers)

        answer = http_response(result.payload)
        if answer is None:
            log.warning(
                "unreadable answer behind the api",
                extra={"function": match.route.function, "request_id": result.request_id},
            )
            return self._refusal(api_id, "DEFAULT_5XX", request_id, headers)
        response = web.Response(status=answer.status, body=answer.body)
        for name, value in answer.headers:
            response.headers.add(name, value)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    @staticmethod
    async def _http_request(request: web.Request) -> HttpRequest:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return HttpRequest(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
            body=await request.read(),
            source_ip=peer[0] if peer else "127.0.0.1",
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
        )


async def _list_functions(request: web.Request) -> web.Response:
    return _json(200, {"functions": request.app[RUNTIME].describe()})


async def _kill_workers(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        pids = request.app[RUNTIME].kill(name)
    except FunctionNotFound:
        return _json(404, {"message": f"no function {name}"})
    return _json(200, {"function": name, "killed_pids": pids})


def _redirect(target: str):
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    return handler


def _mount_pages(app: web.Application, settings: Settings) -> list[str]:
    mounted = []
    for module_name, prefix in PAGE_MODULES:
        if importlib.util.find_spec(module_name) is None:
            continue
        try:
            page_app = importlib.import_module(module_name).create_app(settings)
        except Exception:
            log.exception("page module not mounted", extra={"module": module_name})
            continue
        app.router.add_get(prefix, _redirect(prefix + "/"))
        app.add_subapp(prefix, page_app)
        mounted.append(prefix)
    return mounted


def build_app(runtime: Runtime, api_keys: ApiKeyChecker, settings: Settings) -> web.Application:
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app[RUNTIME] = runtime
    invoke.add_routes(app)
    app.router.add_get("/_emulator/functions", _list_functions)
    app.router.add_post("/_emulator/functions/{name}/kill", _kill_workers)

    mounted = _mount_pages(app, settings)
    if "/_live" in mounted:
        # The live page owns the root; the API's greedy routes never match "/" itself.
        app.router.add_get("/", _redirect("/_live/"))

    gateway = ApiGateway(runtime, api_keys)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app
