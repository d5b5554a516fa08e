#!/usr/bin/env python3
"""The driver of scripts/bench-rollouts: with the services it started, a deployment of 4 built-in
instances under wrk paced through the load balancer; a rolling update's failed requests, and how
fast a bad canary is rolled back: from its first request to no server of its version left in
HAProxy, against an operator's scale-down's removal in the same run. Prints a table and a `result`
line; exits 1 only when the run itself fails (a missed target is reported, not failed).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

DEPLOYMENT = "bench-rollouts"
REPLICAS = 4
CONNECTIONS = 10


def call(method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def until(what, predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    sys.exit(f"bench-rollouts: error: {what} within {timeout} s")


def main():
    parser = argparse.ArgumentParser()
    for name in ("registry", "orchestrator", "balancer", "traffic", "scratch"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()
    deployment = f"{args.orchestrator}/v1/deployments/{DEPLOYMENT}"

    until("the 2 simulated servers online", lambda: len(call("GET", f"{args.registry}/v1/servers?online=true")[1]["items"]) == 2, 60)
    _, model = call("POST", f"{args.registry}/v1/models", {"name": "ro-bench", "task": "object_detection", "format": "onnx"})
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        call("POST", f"{args.registry}/v1/models/{model['id']}/versions",
             {"version": version, "artifact_uri": f"s3://models/ro-bench-{version}.onnx", "sha256": "0" * 64, "size_bytes": 1000})

    def servers():
        status, endpoint = call("GET", f"{args.balancer}/v1/endpoints/{DEPLOYMENT}")
        return endpoint["servers"] if status == 200 else []

    def up(version=None):
        return sum(s["health"] == "UP" and (version is None or s["version"] == version) for s in servers())

    status, created = call("POST", f"{args.orchestrator}/v1/deployments", {
        "name": DEPLOYMENT, "model_id": model["id"], "model_version": "1.0.0",
        "env": {"SIM_ERROR_RATE": "0.2", "SIM_ERROR_VERSION": "1.2.0"},
        "resources": {"cpu_cores": 0.5, "memory_gb": 0.5}, "scaling": {"min_replicas": 1, "max_replicas": 8, "replicas": REPLICAS},
        "load_balancer": {"health_check_interval_seconds": 1}})
    if status != 201:
        sys.exit(f"bench-rollouts: error: the deployment was refused: {created}")
    until(f"{REPLICAS} instances serving", lambda: up() == REPLICAS, 60)

    # Baseline: an operator's scale from 5 to 4, until HAProxy no longer has the removed server.
    call("POST", f"{deployment}/scale", {"replicas": REPLICAS + 1})
    until(f"{REPLICAS + 1} instances serving", lambda: up() == REPLICAS + 1, 60)
    started = time.monotonic()
    call("POST", f"{deployment}/scale", {"replicas": REPLICAS})
    until(f"{REPLICAS} servers after the scale-down", lambda: len(servers()) == REPLICAS, 60, 0.02)
    baseline = time.monotonic() - started

    # wrk paced at the rate: each connection waits CONNECTIONS / rate seconds between requests.
    script = os.path.join(args.scratch, "paced.lua")
    with open(script, "w", encoding="utf-8") as file:
        file.write(f'wrk.method = "POST"\nwrk.body = "pixels"\nlocal mean = {CONNECTIONS * 1000 / args.rate:.4f}\n')
        file.write("function delay()\n    local base = math.floor(mean)\n    if math.random() < mean - base then return base + 1 end\n"
                   "    return base\nend\n")

    def wrk(log):
        return subprocess.Popen(["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", "3600s", "-s", script, f"{args.traffic}/d/{DEPLOYMENT}/v1/infer"],
                                stdout=open(os.path.join(args.scratch, log), "w"), stderr=subprocess.STDOUT)

    def stop(process, log):
        process.send_signal(signal.SIGINT)
        process.wait(10)
        text = open(os.path.join(args.scratch, log), encoding="utf-8").read()
        total = int(re.search(r"(\d+) requests in", text).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        non2xx = int((re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text) or [0, 0])[1])
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        return total, rps, non2xx + (sum(int(g) for g in errors.groups()) if errors else 0)

    # A rolling update under the load.
    load = wrk("wrk-rolling.txt")
    time.sleep(3)
    started = time.monotonic()
    status, answer = call("POST", f"{deployment}/update", {"model_version": "1.1.0"})
    if status != 200:
        sys.exit(f"bench-rollouts: error: the update was refused: {answer}")
    until("the rolling update done", lambda: call("GET", deployment)[1]["rollout"] is None and up("1.1.0") == REPLICAS
          and len(servers()) == REPLICAS, 120, 0.1)
    rolling_seconds = time.monotonic() - started
    time.sleep(3)
    rolling_total, rolling_rps, rolling_failed = stop(load, "wrk-rolling.txt")

    # A bad canary under the load: 1.2.0 fails a fifth of its inferences.
    call("PATCH", deployment, {"update_strategy": {"type": "canary", "canary_steps": [25, 100], "step_seconds": 600,
                                                   "analysis": {"max_error_percent": 5, "min_requests": 20}}})
    load = wrk("wrk-canary.txt")
    time.sleep(3)
    status, answer = call("POST", f"{deployment}/update", {"model_version": "1.2.0"})
    if status != 200:
        sys.exit(f"bench-rollouts: error: the canary was refused: {answer}")

    def first_request():
        return any(s["version"] == "1.2.0" and s.get("requests_total", 0) > 0 for s in servers())

    until("the canary's first request", first_request, 60, 0.02)
    first = time.monotonic()
    until("all traffic back on 1.1.0", lambda: not any(s["version"] == "1.2.0" for s in servers()), 60, 0.02)
    back = time.monotonic() - first
    time.sleep(2)
    canary_total, canary_rps, canary_failed = stop(load, "wrk-canary.txt")
    _, revisions = call("GET", f"{deployment}/revisions")
    reason = revisions["items"][0]["change"]

    print()
    print(f"{'measure':66} {'value':>10}")
    print(f"{'baseline: an operator scale-down, to its server gone from HAProxy (s)':66} {baseline:10.2f}")
    print(f"{'rolling update 1.0.0 -> 1.1.0 (s)':66} {rolling_seconds:10.2f}")
    print(f"{f'  failed of {rolling_total} requests at {rolling_rps:.0f}/s':66} {rolling_failed:10d}")
    print(f"{'bad canary: first request to all traffic back on the stable (s)':66} {back:10.2f}")
    print(f"{f'  failed of {canary_total} requests at {canary_rps:.0f}/s':66} {canary_failed:10d}")
    print(f"rolled back: {reason}")
    print(f"rolling update failures = 0: {'met' if rolling_failed == 0 else 'NOT met'}; bad canary back <= 5 s: "
          f"{'met' if back <= 5 else 'NOT met'}; canary back / baseline: {back / baseline:.1f}")
    print(f"result phase=rollouts rate={args.rate} rolling_failed={rolling_failed} rolling_s={rolling_seconds:.2f} canary_back_s={back:.2f} "
          f"canary_failed={canary_failed} baseline_s={baseline:.2f}")


if __name__ == "__main__":
    main()
