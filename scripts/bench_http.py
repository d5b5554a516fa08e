"""What the benchmarks' Python drivers share: JSON over HTTP to the services, and waiting for a
condition with a deadline."""

import json
import sys
import time
import urllib.error
import urllib.request


def call(method, url, body=None, timeout=30):
    """The status and the JSON answer of `method url` with `body` as JSON; an HTTP error's too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def until(benchmark, what, predicate, timeout, interval=0.05):
    """`predicate`'s first true value, asked every `interval` seconds; the run ends with an error
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    sys.exit(f"{benchmark}: error: {what} within {timeout} s")
