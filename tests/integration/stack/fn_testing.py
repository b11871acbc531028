"""Tiny functions for tests/integration/stack: one that records what it received, one that always fails, one that
fails each
message's first two deliveries, one HTTP echo."""
import base64
import json
import os
import threading

import functions_framework

_print_lock = threading.Lock()


def _log(entry: dict) -> None:
    """One JSON line per call: print() writes the text and the newline separately, so lines of two threads
    (gunicorn serves pushes concurrently) could share a line."""
    with _print_lock:
        print(json.dumps(entry), flush=True)


@functions_framework.cloud_event
def on_ok(event):
    message = event.data["message"]
    payload = json.loads(base64.b64decode(message["data"]))
    _log({"severity": "INFO", "message": "received", "payload": payload, "source": event["source"],
          "id": event["id"]})


@functions_framework.cloud_event
def on_fail(event):
    message = event.data["message"]
    payload = json.loads(base64.b64decode(message["data"]))
    _log({"severity": "ERROR", "message": "failing on purpose", "payload": payload})
    raise RuntimeError("failing on purpose")


_deliveries: dict[str, int] = {}
_deliveries_lock = threading.Lock()


@functions_framework.cloud_event
def on_flaky(event):
    """Fails the first two deliveries of every message (a passing outage), then records it like on_ok."""
    with _deliveries_lock:
        _deliveries[event["id"]] = seen = _deliveries.get(event["id"], 0) + 1
    if seen <= 2:
        raise RuntimeError(f"failing delivery {seen} on purpose")
    on_ok(event)


@functions_framework.http
def echo(request):
    return {"env_marker": os.environ.get("STACK_TEST_MARKER", ""), "path": request.path}
