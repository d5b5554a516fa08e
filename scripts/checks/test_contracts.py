"""The REST contracts: each service's openapi.yaml, and the answers the services really give.

A service's openapi.yaml (Services/<Name>/openapi.yaml) is the one source of its REST API. These
checks hold the running services to it: every answer the Swift tests received from a service
(TestSupport records them, one JSON line each) must be an answer its contract documents for that
method and path, with a body that matches the documented schema. A renamed or dropped field, an
undocumented status code or an undocumented route fails here, whichever test caused it.
"""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from findings import fail_on

ROOT = Path(__file__).resolve().parents[2]
# The services with a REST contract, by executable name.
CONTRACTS = {
    "registry": ROOT / "Services" / "Registry" / "openapi.yaml",
    "orchestrator": ROOT / "Services" / "Orchestrator" / "openapi.yaml",
    "load-balancer": ROOT / "Services" / "LoadBalancer" / "openapi.yaml",
    "metrics-aggregator": ROOT / "Services" / "MetricsAggregator" / "openapi.yaml",
    "autoscaler": ROOT / "Services" / "Autoscaler" / "openapi.yaml",
}
# Every service serves these besides its API (docs/configuration.md); they are outside the
# contracts.
OPERATIONS_ENDPOINTS = {"/health", "/ready", "/metrics"}
METHODS = ("get", "put", "post", "delete", "patch")


def load(service):
    return yaml.safe_load(CONTRACTS[service].read_text(encoding="utf-8"))


@pytest.mark.parametrize("service", sorted(CONTRACTS))
def test_contract_is_valid_openapi_3_1(service, note):
    """The contract is a valid OpenAPI 3.1 document (openapi-spec-validator): clients and
    generators read it, so an invalid one is a broken API whatever the server does."""
    document = load(service)
    assert document.get("openapi", "").startswith("3.1"), f"{service}: openapi is {document.get('openapi')!r}"
    validate_spec(document)
    operations = sum(1 for item in document["paths"].values() for method in item if method in METHODS)
    note(f"{service}: {len(document['paths'])} paths, {operations} operations, "
         f"{len(document.get('components', {}).get('schemas', {}))} schemas")


def test_served_documents_are_generated_from_the_yaml():
    """The Swift source that a service serves at GET /openapi.json (<Name>OpenAPI.swift) was
    generated from the current openapi.yaml: an edit of the contract that was not regenerated
    would be served stale."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate-openapi"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr.strip()


def exchanges():
    path = os.environ.get("MODELFLEET_TEST_EXCHANGES")
    if not path:
        pytest.skip("MODELFLEET_TEST_EXCHANGES is not set: scripts/test sets it to the answers its tests recorded")
    # One JSON line each; not splitlines(), which also cuts at U+0085 and U+2028 inside a body.
    lines = Path(path).read_text(encoding="utf-8").split("\n") if Path(path).exists() else []
    return [json.loads(line) for line in lines if line.strip()]


class Contract:
    """One service's document, with its paths as patterns and a validator per response schema."""

    def __init__(self, service):
        self.service = service
        self.document = load(service)
        self.registry = Registry().with_resource(
            "urn:contract", Resource.from_contents(self.document, default_specification=DRAFT202012))
        self.paths = []
        for template in self.document["paths"]:
            # A literal segment (…/history) before a parameter (…/{index}) at the same place.
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            literal = template.count("{")
            self.paths.append((literal, template, re.compile(pattern)))
        self.paths.sort()

    def template(self, path):
        for _, template, pattern in self.paths:
            if pattern.match(path):
                return template
        return None

    def response(self, template, method, status):
        """The pointer to the documented response, or None."""
        operation = self.document["paths"][template].get(method.lower())
        if operation is None:
            return None, None
        responses = operation.get("responses", {})
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                return operation, key
        return operation, None

    def check_body(self, template, method, key, body):
        response = self.document["paths"][template][method.lower()]["responses"][key]
        if "$ref" in response:
            response = self.registry.resolver().lookup("urn:contract" + response["$ref"]).contents
        content = response.get("content") or {}
        schema_entry = content.get("application/json")
        if schema_entry is None:
            return ["a JSON body where the contract documents none"] if body.strip() else []
        if not body.strip():
            return ["an empty body where the contract documents JSON"]
        try:
            value = json.loads(body)
        except ValueError as error:
            return [f"a body that is not JSON ({error})"]
        pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in
                           ["paths", template, method.lower(), "responses", key, "content", "application/json", "schema"])
        if "$ref" in self.document["paths"][template][method.lower()]["responses"][key]:
            ref = self.document["paths"][template][method.lower()]["responses"][key]["$ref"]
            pointer = ref.lstrip("#/") + "/content/application~1json/schema"
        validator = Draft202012Validator({"$ref": f"urn:contract#/{pointer}"}, registry=self.registry)
        return [f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message[:300]}"
                for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))[:3]]


def test_every_answer_the_tests_received_is_in_the_contract(note):
    """Every answer a registry or orchestrator gave the Swift tests is documented for its method
    and path, with its status code, and its JSON body matches the documented schema. GET
    /openapi.json must answer the contract itself, as JSON."""
    recorded = [entry for entry in exchanges() if entry["service"] in CONTRACTS]
    contracts = {service: Contract(service) for service in CONTRACTS}
    problems = []
    checked = Counter()
    operations_seen = {service: set() for service in CONTRACTS}
    for entry in recorded:
        service, method, status = entry["service"], entry["method"], entry["status"]
        path = entry["path"].split("?", 1)[0]
        where = f"{service} {method} {entry['path']} → {status}"
        if path in OPERATIONS_ENDPOINTS:
            continue
        contract = contracts[service]
        template = contract.template(path)
        if template is None:
            if status in (404, 405):
                continue  # an unknown route, answered as one
            problems.append(f"{where}: no path of the contract matches")
            continue
        operation, key = contract.response(template, method, status)
        if operation is None:
            if status in (404, 405):
                continue
            problems.append(f"{where}: {template} has no {method} operation in the contract")
            continue
        if key is None:
            problems.append(f"{where}: status {status} is not documented for {method} {template}")
            continue
        operations_seen[service].add(operation.get("operationId", f"{method} {template}"))
        checked[service] += 1
        if template == "/openapi.json" and status == 200:
            if json.loads(entry["body"]) != contract.document:
                problems.append(f"{where}: the served document is not {CONTRACTS[service].relative_to(ROOT)}")
            continue
        for problem in contract.check_body(template, method, key, entry["body"]):
            problems.append(f"{where}: {problem}")
    for service in CONTRACTS:
        if checked[service] == 0:
            problems.append(f"{service}: the tests recorded no answer of it to check "
                            "(is TestSupport's ExchangeLog writing MODELFLEET_TEST_EXCHANGES?)")
    # The same drift shows in many answers: one line per distinct problem, counted.
    distinct = Counter(re.sub(r"[0-9a-fA-F-]{36}", "<id>", problem) for problem in problems)
    fail_on([f"{problem} ({count}×)" if count > 1 else problem for problem, count in distinct.most_common()],
            f"{len(problems)} answer(s) the contracts do not document")
    for service in sorted(CONTRACTS):
        total = sum(1 for item in contracts[service].document["paths"].values() for m in item if m in METHODS)
        note(f"{service}: {checked[service]} answers checked, covering {len(operations_seen[service])} of "
             f"{total} operations")


UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def upper_case_ids(value, path="(body)"):
    """The places in a JSON value where an id is written with an upper-case letter: a string that is
    a UUID, or a UUID within a message."""
    if isinstance(value, str):
        ids = UUID_TEXT.findall(value) if path.endswith(".message") else [value] if UUID_TEXT.fullmatch(value) else []
        return [path] if any(text != text.lower() for text in ids) else []
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in upper_case_ids(item, f"{path}[{index}]")]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in upper_case_ids(item, f"{path}.{key}")]
    return []


def test_every_id_the_services_wrote_is_lower_case():
    """Every id in every JSON answer any service gave the Swift tests is written in lower case, as
    RFC 9562 asks and fleetctl prints them (issue 18): one spelling of an id everywhere."""
    problems = Counter()
    for entry in exchanges():
        try:
            body = json.loads(entry["body"]) if entry["body"].strip() else None
        except ValueError:
            continue
        path = UUID_TEXT.sub("<id>", entry["path"].split("?", 1)[0])
        for place in upper_case_ids(body):
            place = re.sub(r"\[[0-9]+\]", "[*]", place)
            problems[f"{entry['service']} {entry['method']} {path}: {place}"] += 1
    fail_on([f"{problem} ({count}×)" for problem, count in problems.most_common()],
            "ids written in upper case (expected lower case)")

