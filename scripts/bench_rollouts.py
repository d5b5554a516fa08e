#!/usr/bin/env python3
"""The driver of scripts/bench-rollouts: with the services it started, a deployment of 4 built-in
instances under wrk paced through the load balancer: a rolling update's failed requests; how long
a bad canary serves before its rollback, from its first answer to its last as a probe beside wrk
(100 requests a second, keep-alive) sees them (its 200s say 1.2.0, its failures are 500s); and a
blue-green switch and switch back. The baseline, in the same run: an operator's scale-down until
HAProxy no longer has the removed server. Prints a table and a `result` line; exits 1 only when
the run itself fails (a missed target is reported, not failed).
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import bench_http
from bench_http import call

DEPLOYMENT = "bench-rollouts"
REPLICAS = 4
CONNECTIONS = 10


def until(what, predicate, timeout, interval=0.05):
    return bench_http.until("bench-rollouts", what, predicate, timeout, interval)


def main():
    parser = argparse.ArgumentParser()
    for name in ("registry", "orchestrator", "balancer", "traffic", "scratch"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()
    deployment = f"{args.orchestrator}/v1/deployments/{DEPLOYMENT}"

    until("the 2 simulated servers online", lambda: len(call("GET", f"{args.registry}/v1/servers?online=true")[1]["items"]) == 2, 60)
    _, model = call("POST", f"{args.registry}/v1/models", {"name": "ro-bench", "task": "object_detection", "format": "onnx"})
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
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
    probe_answers, stop_probe = [], threading.Event()

    def probe():
        target = urllib.parse.urlsplit(args.traffic)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        while not stop_probe.is_set():
            try:
                connection.request("POST", f"/d/{DEPLOYMENT}/v1/infer", body=b"pixels")
                reply = connection.getresponse()
                body = reply.read()
                answer = json.loads(body).get("version") if reply.status == 200 else reply.status
            except (OSError, http.client.HTTPException, ValueError):
                connection.close()
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
                answer = "no answer"
            probe_answers.append((time.monotonic(), answer))
            time.sleep(0.01)

    probe_thread = threading.Thread(target=probe, daemon=True)
    probe_thread.start()
    time.sleep(3)
    status, answer = call("POST", f"{deployment}/update", {"model_version": "1.2.0"})
    if status != 200:
        sys.exit(f"bench-rollouts: error: the canary was refused: {answer}")

    def first_request():
        return any(s["version"] == "1.2.0" and s.get("requests_total", 0) > 0 for s in servers())

    until("the canary's first request", first_request, 60, 0.02)
    until("no server of 1.2.0 left in HAProxy", lambda: not any(s["version"] == "1.2.0" for s in servers()), 60, 0.02)
    time.sleep(2)
    stop_probe.set()
    probe_thread.join(10)
    canary_total, canary_rps, canary_failed = stop(load, "wrk-canary.txt")
    canary_answers = [at for at, answer in probe_answers if answer in ("1.2.0", 500)]
    if not canary_answers:
        sys.exit("bench-rollouts: error: the probe never reached the canary")
    back = canary_answers[-1] - canary_answers[0]
    probe_failed = sum(answer == 500 for _, answer in probe_answers)
    _, revisions = call("GET", f"{deployment}/revisions")
    reason = revisions["items"][0]["change"]

    # Blue-green under the load: 1.3.0's set beside 1.1.0's, switched on promote, switched back.
    call("PATCH", deployment, {"update_strategy": {"type": "blue_green", "bake_seconds": 0, "scale_down_delay_seconds": 600}})
    load = wrk("wrk-blue-green.txt")
    time.sleep(3)
    status, answer = call("POST", f"{deployment}/update", {"model_version": "1.3.0"})
    if status != 200:
        sys.exit(f"bench-rollouts: error: the blue-green update was refused: {answer}")
    until("the new set UP beside the old", lambda: up("1.3.0") == REPLICAS, 60, 0.05)

    def weights(version):
        return {s["weight"] for s in servers() if s["version"] == version}

    started = time.monotonic()
    call("POST", f"{deployment}/promote", {})
    until("every request on 1.3.0", lambda: weights("1.3.0") == {256} and weights("1.1.0") == {0}, 30, 0.01)
    switch = time.monotonic() - started
    time.sleep(3)
    started = time.monotonic()
    call("POST", f"{deployment}/rollback", {})
    until("every request back on 1.1.0", lambda: not weights("1.3.0") and weights("1.1.0") == {100}, 30, 0.01)
    switch_back = time.monotonic() - started
    time.sleep(3)
    blue_green_total, blue_green_rps, blue_green_failed = stop(load, "wrk-blue-green.txt")

    print()
    print(f"{'measure':66} {'value':>10}")
    print(f"{'baseline: an operator scale-down, to its server gone from HAProxy (s)':66} {baseline:10.2f}")
    print(f"{'rolling update 1.0.0 -> 1.1.0 (s)':66} {rolling_seconds:10.2f}")
    print(f"{f'  failed of {rolling_total} requests at {rolling_rps:.0f}/s':66} {rolling_failed:10d}")
    print(f"{'bad canary: its first answer to its last, seen by the probe (s)':66} {back:10.2f}")
    print(f"{f'  failed of {canary_total} requests at {canary_rps:.0f}/s (wrk)':66} {canary_failed:10d}")
    print(f"{f'  failed of {len(probe_answers)} probe requests; the canary answered {len(canary_answers)}':66} {probe_failed:10d}")
    print(f"{'blue-green: promote to every request on the new set (s)':66} {switch:10.2f}")
    print(f"{'blue-green: rollback to every request on the old set (s)':66} {switch_back:10.2f}")
    print(f"{f'  failed of {blue_green_total} requests at {blue_green_rps:.0f}/s':66} {blue_green_failed:10d}")
    print(f"rolled back: {reason}")
    print(f"rolling update failures = 0: {'met' if rolling_failed == 0 else 'NOT met'}; bad canary back <= 5 s: "
          f"{'met' if back <= 5 else 'NOT met'}; blue-green failures = 0: {'met' if blue_green_failed == 0 else 'NOT met'}; "
          f"canary back / baseline: {back / baseline:.1f}")
    print(f"result phase=rollouts rate={args.rate} rolling_failed={rolling_failed} rolling_s={rolling_seconds:.2f} canary_back_s={back:.2f} "
          f"canary_failed={canary_failed} probe_failed={probe_failed} blue_green_failed={blue_green_failed} switch_s={switch:.2f} "
          f"switch_back_s={switch_back:.2f} baseline_s={baseline:.2f}")


if __name__ == "__main__":
    main()
