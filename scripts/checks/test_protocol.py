"""Static checks of the device protocol: its JSON Schemas (Shared/DeviceProtocol/Schemas) and the
page device makers read (docs/device-protocol.md).

The device gateway enforces the schemas with a small validator of its own (Swift), which knows
only some keywords of JSON Schema; the documentation's examples are what agent authors copy. So
each message kind's schema is checked against both JSON Schema and the gateway's validator, and
its example against the schema, including broken copies that must be refused. Run them with
scripts/check-protocol (which installs requirements-protocol.txt into .build-tools/venv-protocol),
or on their own:

    .build-tools/venv-protocol/bin/python -m pytest scripts/checks/test_protocol.py
"""

import json
import re

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from device_protocol import (
    DELETE, DOC, KINDS, Add, envelope_type, errors_of, examples, json_blocks, load_schema,
    mutated, pointer, rel, schema_path,
)
from findings import fail_on

ID_PREFIX = "https://modelfleet.dev/schemas/device-protocol/v1/"
ENVELOPE_REQUIRED = ["schema_version", "type", "message_id", "sent_at", "payload"]
ENVELOPE_FIELDS = set(ENVELOPE_REQUIRED) | {"correlation_id"}
# The gateway's size limit per inbound message; desired is outbound (published by the gateway).
SIZE_LIMITS = {"hello": 2 * 1024 * 1024}
DEFAULT_SIZE_LIMIT = 256 * 1024

# The keywords the gateway's Swift validator implements. Anything else would be silently ignored
# there, so a schema using it would promise a check that never runs.
SUPPORTED = {
    "$schema", "$id", "title", "description", "$comment", "$defs", "$ref", "type", "enum", "const",
    "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "format",
}
TOP_LEVEL_ONLY = {"$schema", "$id", "$defs"}
JSON_TYPES = {"null", "boolean", "object", "array", "number", "integer", "string"}
NUMBER_KEYWORDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
COUNT_KEYWORDS = {"minItems", "maxItems", "minLength", "maxLength"}
ANNOTATIONS = {"title", "description", "$comment", "format"}

each_kind = pytest.mark.parametrize("kind", KINDS)


def schema_of(kind):
    """The schema of KIND; the test fails plainly when its file does not exist."""
    if not schema_path(kind).is_file():
        pytest.fail(f"{rel(schema_path(kind))} does not exist", pytrace=False)
    return load_schema(kind)


def examples_of_page():
    """examples(); the test fails plainly when the page does not exist."""
    if not DOC.is_file():
        pytest.fail(f"{rel(DOC)} does not exist", pytrace=False)
    return examples()


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# schema:<kind>
# --------------------------------------------------------------------------------------------

@each_kind
def test_schema_is_a_valid_envelope(kind, note):
    """The schema file is valid draft 2020-12 (Draft202012Validator.check_schema), its $id names
    its file, it has a title and description, it describes the whole envelope (closed, with the
    envelope's fields, schema_version 1) and its `type` is an agent.* const no other kind uses:
    the gateway picks the schema by that type."""
    path = schema_path(kind)
    schema = schema_of(kind)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        fail_on([f"at {pointer(*error.path) or '(top level)'}: {error.message}"],
                f"{rel(path)} is not a valid draft 2020-12 schema")
    problems = []
    if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        problems.append(f"$schema is {schema.get('$schema')!r}, not draft 2020-12")
    if schema.get("$id") != f"{ID_PREFIX}{kind}.schema.json":
        problems.append(f"$id is {schema.get('$id')!r}, expected {ID_PREFIX}{kind}.schema.json")
    for keyword in ("title", "description"):
        if not isinstance(schema.get(keyword), str) or not schema[keyword].strip():
            problems.append(f"no {keyword}")
    if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
        problems.append("the envelope must be an object with additionalProperties false")
    if set(schema.get("properties") or {}) != ENVELOPE_FIELDS:
        problems.append(f"envelope fields {sorted(schema.get('properties') or {})}, expected "
                        f"{sorted(ENVELOPE_FIELDS)}")
    if sorted(schema.get("required") or []) != sorted(ENVELOPE_REQUIRED):
        problems.append(f"envelope requires {schema.get('required')}, expected {ENVELOPE_REQUIRED}")
    if ((schema.get("properties") or {}).get("schema_version") or {}).get("const") != 1:
        problems.append("schema_version is not const 1")
    message_type = envelope_type(schema)
    if not isinstance(message_type, str) or not message_type.startswith("agent."):
        problems.append(f"properties/type has no const agent.* message type ({message_type!r})")
    others = [other for other in KINDS if other != kind and schema_path(other).is_file()
              and envelope_type(load_schema(other)) == message_type]
    if others:
        problems.append(f"type {message_type!r} is also the type of {', '.join(others)}")
    fail_on(problems, f"{rel(path)}: {len(problems)} problem(s)")
    note(f"{rel(path)} is valid draft 2020-12, type {message_type}")


# --------------------------------------------------------------------------------------------
# keywords:<kind>
# --------------------------------------------------------------------------------------------

@each_kind
def test_schema_uses_only_what_the_gateway_validates(kind, note):
    """The schema uses only the keywords the gateway's validator supports (SUPPORTED), $defs only
    at the top, $ref only as "#/$defs/<name>" to a definition that exists, and patterns anchored
    with ^ and $ and free of what the gateway's regex engine reads differently. A keyword the
    gateway ignores would promise a check that never runs. A problem names its JSON pointer."""
    schema = schema_of(kind)
    problems = []
    walk_keywords(schema, "", schema.get("$defs") or {}, problems)
    where = rel(schema_path(kind))
    fail_on([f"{where}#{problem}" for problem in problems],
            f"{where} uses what the gateway's validator does not know")
    note("only the keywords the gateway's validator supports; local $refs resolve")


def walk_keywords(node, where, definitions, problems):
    """Checks one subschema and the subschemas inside it against the gateway's keyword set."""
    if not isinstance(node, dict):
        problems.append(f"{where or '/'}: a schema must be an object here, not {json.dumps(node)}")
        return
    for keyword, value in node.items():
        at = where + pointer(keyword)
        if keyword not in SUPPORTED:
            problems.append(f"{at}: keyword {keyword!r} is not supported by the gateway's validator")
            continue
        if keyword in TOP_LEVEL_ONLY and where:
            problems.append(f"{at}: {keyword} is allowed at the top level only")
        if keyword in ("properties", "$defs"):
            if not isinstance(value, dict):
                problems.append(f"{at}: must be an object")
                continue
            for name, subschema in value.items():
                walk_keywords(subschema, at + pointer(name), definitions, problems)
        elif keyword == "items" or (keyword == "additionalProperties" and not isinstance(value, bool)):
            walk_keywords(value, at, definitions, problems)
        else:
            problems += keyword_value_problems(keyword, value, node, at, definitions)


def keyword_value_problems(keyword, value, node, at, definitions):
    """What is wrong with the VALUE of one keyword that holds no subschema."""
    if keyword == "$ref":
        match = re.fullmatch(r"#/\$defs/([^/~]+)", value) if isinstance(value, str) else None
        if not match:
            return [f"{at}: {value!r} is not a local #/$defs/<name> reference"]
        if match.group(1) not in definitions:
            return [f"{at}: {value!r} names no definition of $defs"]
    elif keyword == "type":
        types = value if isinstance(value, list) else [value]
        if not types or not all(isinstance(t, str) and t in JSON_TYPES for t in types):
            return [f"{at}: {value!r} is not a JSON type or list of them"]
    elif keyword == "required":
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            return [f"{at}: must be a list of names"]
        missing = [name for name in value if name not in (node.get("properties") or {})]
        if missing:
            return [f"{at}: requires {missing}, which properties does not define"]
    elif keyword == "enum":
        if not isinstance(value, list) or not value:
            return [f"{at}: must be a non-empty list"]
    elif keyword in NUMBER_KEYWORDS:
        if not is_number(value):
            return [f"{at}: must be a number"]
    elif keyword in COUNT_KEYWORDS:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return [f"{at}: must be a non-negative integer"]
    elif keyword == "pattern":
        return pattern_problems(value, at)
    elif keyword in ANNOTATIONS:
        if not isinstance(value, str):
            return [f"{at}: must be a string"]
    return []


def pattern_problems(value, at):
    if not isinstance(value, str) or not value.startswith("^") or not value.endswith("$"):
        return [f"{at}: {value!r} is not anchored with ^ and $"]
    problems = []
    if re.search(r"\(\?[<=!P]|\\[pPkg]|\(\?i", value):
        problems.append(f"{at}: {value!r} uses lookaround, named groups, flags or "
                        "Unicode classes; keep patterns simple")
    try:
        re.compile(value)
    except re.error as error:
        problems.append(f"{at}: {value!r} does not compile: {error}")
    return problems


# --------------------------------------------------------------------------------------------
# strict:<kind>
# --------------------------------------------------------------------------------------------

@each_kind
def test_schema_objects_refuse_unknown_fields(kind, note):
    """Every object with properties refuses others (additionalProperties false), so that a
    misspelt field is an error rather than a value silently dropped; only `settings` objects are
    free-form, and say so (additionalProperties true); a map whose values have a schema (an
    instance's `env`: names to strings) has no fields to misspell."""
    objects = walk_objects(schema_of(kind), "", [])
    problems, free_form = [], 0
    for where, node in objects:
        closed = node.get("additionalProperties") is False or (
            isinstance(node.get("additionalProperties"), dict) and "properties" not in node)
        if free_form_allowed(where) and "properties" not in node:
            free_form += 1
            if node.get("additionalProperties", True) is not True:
                problems.append(f"{where}: a free-form object must say additionalProperties true")
        elif not closed:
            problems.append(f"{where or '/'}: an object without additionalProperties false")
    fail_on(problems, f"{len(problems)} object(s) accept unknown fields")
    note(f"{len(objects) - free_form} object(s) refuse unknown fields; "
         f"{free_form} free-form (settings)")


def walk_objects(node, where, found):
    """Appends (JSON pointer, subschema) to FOUND for every subschema that may be an object."""
    if not isinstance(node, dict):
        return found
    types = node.get("type")
    types = types if isinstance(types, list) else [types]
    if "object" in types or "properties" in node or "additionalProperties" in node:
        found.append((where, node))
    for keyword in ("properties", "$defs"):
        for name, subschema in (node.get(keyword) or {}).items():
            walk_objects(subschema, where + pointer(keyword, name), found)
    if isinstance(node.get("items"), dict):
        walk_objects(node["items"], where + pointer("items"), found)
    if isinstance(node.get("additionalProperties"), dict):
        walk_objects(node["additionalProperties"], where + pointer("additionalProperties"), found)
    return found


def free_form_allowed(where):
    return where.endswith("/settings")


# --------------------------------------------------------------------------------------------
# examples (once) and example:<kind>
# --------------------------------------------------------------------------------------------

def test_every_json_block_of_the_page_is_a_message(note):
    """Every ```json block of docs/device-protocol.md is JSON, a whole message of a known kind,
    and the only example of its kind: the blocks are what agent authors copy, and each is checked
    against its schema below (anything else goes in ```text)."""
    _, problems = examples_of_page()
    fail_on(problems, f"{len(problems)} ```json block(s) of {rel(DOC)} are no example of a kind")
    note(f"{len(json_blocks())} ```json block(s) in {rel(DOC)}, each a message of a kind")


@each_kind
def test_example_is_valid_and_links_its_schema(kind, note):
    """docs/device-protocol.md has a ```json example of the kind, it is valid against the schema
    (formats checked too; patterns with ECMA-262 semantics, so `$` is the very end, not before a
    final newline), within the gateway's size limit, and the page links the schema file."""
    found, _ = examples_of_page()
    message_type = envelope_type(schema_of(kind))
    link = f"../Shared/DeviceProtocol/Schemas/{kind}.schema.json"
    problems = []
    if f"]({link})" not in DOC.read_text(encoding="utf-8"):
        problems.append(f"{rel(DOC)} does not link the schema as ]({link})")
    if kind not in found:
        problems.append(f"{rel(DOC)} has no ```json example of type {message_type!r}")
        fail_on(problems, f"no example of {kind}")
    line, message = found[kind]
    problems += [f"{rel(DOC)}:{line}: {error}" for error in errors_of(kind, message)]
    size = len(json.dumps(message, ensure_ascii=False).encode("utf-8"))
    limit = SIZE_LIMITS.get(kind, DEFAULT_SIZE_LIMIT)
    if kind != "desired" and size > limit:
        problems.append(f"{rel(DOC)}:{line}: {size} bytes, over the gateway's limit of {limit}")
    fail_on(problems, f"the example of {kind} ({rel(DOC)}:{line}) is not right")
    note(f"{rel(DOC)}:{line} is a valid {message_type}")


# --------------------------------------------------------------------------------------------
# negative:<kind>: broken copies of each example must be refused
# --------------------------------------------------------------------------------------------

# Copies that every schema must refuse: (what, JSON pointer, value).
COMMON_NEGATIVES = [
    ("an extra payload field", "/payload/unexpected", Add(1)),
    ("payload.agent_id 'a/b'", "/payload/agent_id", "a/b"),
    ("payload.agent_id ''", "/payload/agent_id", ""),
    ("payload.agent_id of 129 characters", "/payload/agent_id", "a" * 129),
    ("payload.agent_id with a final newline", "/payload/agent_id", "agent-1\n"),
    ("no payload.agent_id", "/payload/agent_id", DELETE),
    ("an extra envelope field", "/extra", Add(True)),
    ("schema_version 2", "/schema_version", 2),
    ("another message type", "/type", "agent.unknown"),
    ("a message_id that is no UUID", "/message_id", "not-a-uuid"),
    ("a sent_at that is no timestamp", "/sent_at", "yesterday"),
    ("no sent_at", "/sent_at", DELETE),
    ("a payload that is an array", "/payload", []),
]

# Per kind: copies to refuse, and copies to accept (the free-form parts, optional fields).
NEGATIVES = {
    "presence": [
        ("state 'away'", "/payload/state", "away"),
        ("no reason", "/payload/reason", DELETE),
    ],
    "hello": [
        ("an extra device field", "/payload/devices/0/serial", Add("X1")),
        ("site.id 'a b'", "/payload/site/id", "a b"),
        ("site.id with a final newline", "/payload/site/id", "plant-lyon\n"),
        ("negative cpu_cores", "/payload/capacity/cpu_cores", -1),
        ("memory_bytes 1.5", "/payload/capacity/memory_bytes", 1.5),
        ("gpus[0].count 65", "/payload/capacity/gpus/0/count", 65),
        ("applied_generation -1", "/payload/applied_generation", -1),
        ("no applied_generation", "/payload/applied_generation", DELETE),
        ("supports_pipelines 'yes'", "/payload/supports_pipelines", "yes"),
    ],
    "heartbeat": [
        ("negative uptime_seconds", "/payload/uptime_seconds", -1),
        ("applied_generation '3'", "/payload/applied_generation", "3"),
    ],
    "telemetry": [
        ("interval_seconds 0", "/payload/interval_seconds", 0),
        ("interval_seconds 3601", "/payload/interval_seconds", 3601),
        ("host.cpu_percent 101", "/payload/host/cpu_percent", 101),
        ("no host.memory_used_bytes", "/payload/host/memory_used_bytes", DELETE),
        ("an extra host field", "/payload/host/unexpected", Add(1)),
        ("no latency p99", "/payload/pipelines/0/latency_ms/p99", DELETE),
        ("negative frames", "/payload/pipelines/0/frames", -1),
    ],
    "report": [
        ("state 'paused'", "/payload/devices/0/pipelines/0/state", "paused"),
        ("reason ''", "/payload/devices/1/pipelines/0/reason", ""),
        ("reason of 1025 characters", "/payload/devices/1/pipelines/0/reason", "x" * 1025),
        ("pipeline_id 'a/b'", "/payload/devices/0/pipelines/0/pipeline_id", "a/b"),
        ("no generation", "/payload/generation", DELETE),
    ],
    "desired": [
        ("generation 0", "/payload/generation", 0),
        ("generation 1.5", "/payload/generation", 1.5),
        ("no stages", "/payload/devices/0/pipelines/0/stages", []),
        ("an uppercase sha256", "/payload/devices/0/pipelines/0/stages/0/sha256", "A" * 64),
        ("a sha256 with a final newline", "/payload/devices/0/pipelines/0/stages/0/sha256",
         "a" * 64 + "\n"),
        ("version 'latest'", "/payload/devices/0/pipelines/0/stages/0/version", "latest"),
        ("an extra pipeline field", "/payload/devices/0/pipelines/0/unexpected", Add(1)),
        ("an extra processor field",
         "/payload/devices/0/pipelines/0/stages/0/post_processors/0/unexpected", Add(1)),
        ("processor settings that are no object",
         "/payload/devices/0/pipelines/0/stages/0/post_processors/0/settings", [1]),
        ("model_id that is no UUID", "/payload/devices/0/pipelines/0/stages/0/model_id", "m-1"),
        ("a deployment that is no object", "/payload/deployments", [1]),
    ],
}

POSITIVES = {
    "presence": [("a correlation_id", "/correlation_id", Add("0E7C2B0A-5D55-4C43-8F39-4B1F1C9B6D10"))],
    "hello": [("no GPUs, no devices", "/payload/capacity/gpus", []),
              ("a lowercase message_id", "/message_id", "3b68b05c-9163-42e8-9b8f-245ae6b05ebd")],
    "heartbeat": [("fractional uptime", "/payload/uptime_seconds", 0.25)],
    "telemetry": [("no gpu_percent", "/payload/host/gpu_percent", DELETE),
                  ("no pipelines", "/payload/pipelines", [])],
    "report": [("a reason on a running pipeline", "/payload/devices/0/pipelines/0/reason",
                Add("restarted after a camera timeout")),
               ("no devices", "/payload/devices", [])],
    "desired": [
        ("free-form stage settings", "/payload/devices/0/pipelines/0/stages/0/settings",
         {"anything": {"nested": [1, "two", None]}, "input_size": [640, 480]}),
        ("no deployments", "/payload/deployments", DELETE),
        ("no devices", "/payload/devices", []),
    ],
}


@each_kind
def test_broken_copies_of_the_example_are_refused(kind, note):
    """Broken copies of the kind's example (COMMON_NEGATIVES, and a few per kind in NEGATIVES) are
    refused by its schema, and copies that use the free-form parts or leave out optional fields
    (POSITIVES) are accepted: a schema that accepts its example could still accept anything. A
    variant that cannot be made from the example (the field it changes is missing) fails too."""
    schema_of(kind)
    found, _ = examples_of_page()
    if kind not in found:
        pytest.fail(f"no example of {kind} in {rel(DOC)} to break", pytrace=False)
    _, message = found[kind]
    problems, refused, accepted = [], 0, 0
    for what, path, value in COMMON_NEGATIVES + NEGATIVES.get(kind, []):
        try:
            broken = mutated(message, path, value)
        except (KeyError, IndexError, ValueError, TypeError) as error:
            problems.append(f"{what}: cannot be made from the example ({error})")
            continue
        if errors_of(kind, broken):
            refused += 1
        else:
            problems.append(f"{what} ({path}) is accepted; the schema must refuse it")
    for what, path, value in POSITIVES.get(kind, []):
        try:
            variant = mutated(message, path, value)
        except (KeyError, IndexError, ValueError, TypeError) as error:
            problems.append(f"{what}: cannot be made from the example ({error})")
            continue
        errors = errors_of(kind, variant)
        if errors:
            problems.append(f"{what} ({path}) is refused, but is allowed: {errors[0]}")
        else:
            accepted += 1
    fail_on(problems, f"{len(problems)} variant(s) of the {kind} example judged wrongly")
    note(f"{refused} broken copies refused, {accepted} allowed variants accepted")
