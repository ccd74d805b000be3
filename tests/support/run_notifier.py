"""Run the notifier's handler once on a Kafka event read from a JSON file, as a Lambda would.

`python tests/support/run_notifier.py event.json` prints the handler's answer. The tests start it
as a process of its own so they can kill it mid-batch, as Lambda kills an environment.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid

from consim.config import REPO_ROOT

NOTIFIER_DIR = REPO_ROOT / "functions" / "notifier"


class LambdaContext:
    function_name = "consim-local-notifier"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:consim-local-notifier"
    log_group_name = "/aws/lambda/consim-local-notifier"
    log_stream_name = "local"

    def __init__(self, timeout_seconds: float = 30.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler():
    """The handler module under a name of its own (every function has a `handler.py`)."""
    if str(NOTIFIER_DIR) not in sys.path:
        sys.path.insert(0, str(NOTIFIER_DIR))
    spec = importlib.util.spec_from_file_location("notifier_handler", NOTIFIER_DIR / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    with open(sys.argv[1]) as source:
        event = json.load(source)
    answer = load_handler().handler(event, LambdaContext())
    print(json.dumps(answer), flush=True)
