"""One Lambda execution environment: `python -m emulator.worker`, started by emulator.workers.

It imports the handler once (the cold start), then serves invocations read from a private pipe
until the pipe closes. The function's own stdout and stderr stay its log streams.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from emulator.protocol import WorkerGone, encode, read_frame

REQUEST_FD_ENV = "EMULATOR_REQUEST_FD"
RESPONSE_FD_ENV = "EMULATOR_RESPONSE_FD"
LAYERS_ENV = "EMULATOR_LAYER_PATHS"


class LambdaContext:
    """The attributes and method of the context object the Python runtime passes."""

    def __init__(self, message: dict[str, Any]) -> None:
        env = os.environ
        self.aws_request_id = message["request_id"]
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = message["invoked_function_arn"]
        self.memory_limit_in_mb = env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = env["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = env["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = message.get("client_context")
        self._deadline_ms = message["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error shape for an exception raised by a function."""
    # The runtime's own frames are noise to the function's author; Lambda leaves them out too.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(frames),
    }


def load_handler(spec: str) -> Any:
    module_name, _, attribute = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{spec}': not enough values to unpack")
    module = importlib.import_module(module_name.replace("/", "."))
    return getattr(module, attribute)


def _set_path() -> None:
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    layers = [p for p in os.environ.get(LAYERS_ENV, "").split(os.pathsep) if p]
    # Lambda's order: the function's own code first, then the layers (/opt/python).
    for entry in reversed([task_root, *layers]):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    os.chdir(task_root)


def _init() -> tuple[Any, dict[str, Any] | None, float]:
    started = time.perf_counter()
    try:
        _set_path()
        handler = load_handler(os.environ["_HANDLER"])
        error = None
    except ImportError as exc:
        handler, error = None, error_payload(exc, "Runtime.ImportModuleError")
    except Exception as exc:
        handler, error = None, error_payload(exc, "Runtime.HandlerNotFound")
    return handler, error, (time.perf_counter() - started) * 1000


def _invoke(handler: Any, message: dict[str, Any]) -> dict[str, Any]:
    trace_header = message.get("trace_header")
    if trace_header:
        os.environ["_X_AMZN_TRACE_ID"] = trace_header
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    reply: dict[str, Any] = {"type": "result", "request_id": message["request_id"]}
    try:
        result = handler(message["event"], LambdaContext(message))
    except Exception as exc:
        reply.update(ok=False, error=error_payload(exc))
    else:
        try:
            json.dumps(result)
            reply.update(ok=True, payload=result)
        except (TypeError, ValueError) as exc:
            # What cannot be serialised is the function's error, as in Lambda.
            reply.update(ok=False, error=error_payload(exc, "Runtime.MarshalError"))
    sys.stdout.flush()
    sys.stderr.flush()
    reply.get("error", {}).update(requestId=message["request_id"])
    return reply


def main() -> int:
    requests = os.fdopen(int(os.environ.pop(REQUEST_FD_ENV)), "rb", buffering=0)
    responses = os.fdopen(int(os.environ.pop(RESPONSE_FD_ENV)), "wb", buffering=0)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the function must not read the protocol

    handler, init_error, init_ms = _init()
    responses.write(encode({"type": "ready", "init_ms": init_ms, "init_error": init_error}))
    if init_error is not None:
        return 1

    while True:
        try:
            message = read_frame(requests)
        except WorkerGone:
            return 0
        responses.write(encode(_invoke(handler, message)))


if __name__ == "__main__":
    sys.exit(main())
