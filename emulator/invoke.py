"""The Lambda Invoke API (`POST /2015-03-31/functions/<name>/invocations`) on the gateway port,
so boto3 or the AWS CLI with an endpoint URL can invoke any function of the template."""

from __future__ import annotations

import json

from aiohttp import web

from emulator.runtime import FunctionNotFound, Runtime, Throttled

INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
RUNTIME = web.AppKey("runtime", Runtime)


def _aws_error(status: int, error_type: str, message: str, **extra: str) -> web.Response:
    body = {"Type": "User", "message": message, **extra}
    return web.json_response(body, status=status, headers={"x-amzn-ErrorType": error_type})


async def handle_invoke(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name = request.match_info["name"]
    invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    raw = await request.read()
    try:
        event = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _aws_error(
            400, "InvalidRequestContentException", "Could not parse request body into json"
        )
    trace_header = request.headers.get("X-Amzn-Trace-Id")

    try:
        spec = runtime.spec(name)
        if invocation_type == "DryRun":
            return web.Response(status=204)
        if invocation_type == "Event":
            runtime.invoke_event(spec.logical_id, event, trace_header)
            return web.Response(status=202)
        result = await runtime.invoke(spec.logical_id, event, trace_header)
    except FunctionNotFound:
        return _aws_error(404, "ResourceNotFoundException", f"Function not found: {name}")
    except Throttled:
        return _aws_error(
            429,
            "TooManyRequestsException",
            "Rate Exceeded.",
            Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
        )

    headers = {
        "X-Amz-Executed-Version": "$LATEST",
        "x-amzn-RequestId": result.request_id,
        "Content-Type": "application/json",
    }
    if not result.ok:
        headers["X-Amz-Function-Error"] = "Unhandled"
    return web.Response(status=200, body=json.dumps(result.payload).encode(), headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_post(INVOKE_PATH, handle_invoke)
