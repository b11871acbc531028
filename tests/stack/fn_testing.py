"""Tiny functions for tests/stack: one that records what it received, one that always fails, one HTTP echo."""
import json
import os
import base64

import functions_framework


@functions_framework.cloud_event
def on_ok(event):
    message = event.data["message"]
    payload = json.loads(base64.b64decode(message["data"]))
    print(json.dumps({"severity": "INFO", "message": "received", "payload": payload, "source": event["source"],
                      "id": event["id"]}), flush=True)


@functions_framework.cloud_event
def on_fail(event):
    message = event.data["message"]
    payload = json.loads(base64.b64decode(message["data"]))
    print(json.dumps({"severity": "ERROR", "message": "failing on purpose", "payload": payload}), flush=True)
    raise RuntimeError("failing on purpose")


@functions_framework.http
def echo(request):
    return {"env_marker": os.environ.get("STACK_TEST_MARKER", ""), "path": request.path}
