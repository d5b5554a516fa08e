"""The device protocol as test_protocol.py reads it: the JSON Schemas of
Shared/DeviceProtocol/Schemas, the ```json examples of docs/device-protocol.md, a validator with
JSON Schema's own pattern semantics, and copies of a message with one field changed."""

import copy
import functools
import json
import re
from pathlib import Path

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "Shared" / "DeviceProtocol" / "Schemas"
DOC = ROOT / "docs" / "device-protocol.md"
KINDS = ["presence", "hello", "heartbeat", "telemetry", "report", "desired", "request", "response"]


def rel(path):
    """PATH relative to the repository, for messages."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def pointer(*parts):
    """The JSON pointer (RFC 6901) of PARTS."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def schema_path(kind):
    return SCHEMAS / f"{kind}.schema.json"


@functools.cache
def _parsed_schema(kind):
    return json.loads(schema_path(kind).read_text(encoding="utf-8"))


def load_schema(kind):
    """The schema of KIND, parsed once; a copy, so no check sees another's edits."""
    return copy.deepcopy(_parsed_schema(kind))


def envelope_type(schema):
    """The message type a schema describes: its properties/type const."""
    return ((schema.get("properties") or {}).get("type") or {}).get("const")


# --------------------------------------------------------------------------------------------
# The page and its examples
# --------------------------------------------------------------------------------------------

def json_blocks():
    """The ```json blocks of the page: [(line number, text)]."""
    blocks, current, start, fence = [], None, 0, None
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if current is None and fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([^\s`]*)", stripped)
            if match:
                fence = match.group(1)
                if match.group(2).lower() == "json":
                    current, start = [], number
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            if current is not None:
                blocks.append((start, "\n".join(current)))
            current, fence = None, None
        elif current is not None:
            current.append(line)
    return blocks


@functools.cache
def _examples():
    by_type = {envelope_type(load_schema(kind)): kind for kind in KINDS
               if schema_path(kind).is_file()}
    found, problems, lines = {}, [], {}
    for line, text in json_blocks():
        try:
            message = json.loads(text)
        except json.JSONDecodeError as error:
            problems.append(f"{rel(DOC)}:{line}: the ```json block is not JSON: {error}")
            continue
        message_type = message.get("type") if isinstance(message, dict) else None
        kind = by_type.get(message_type)
        if kind is None:
            problems.append(f"{rel(DOC)}:{line}: the ```json block's type {message_type!r} "
                            "names no schema (every ```json block must be a whole message)")
        elif kind in found:
            problems.append(f"{rel(DOC)}:{line}: a second ```json example of {kind} "
                            f"(first at line {lines[kind]}); use ```text for anything else")
        else:
            found[kind], lines[kind] = message, line
    return {kind: (lines[kind], found[kind]) for kind in found}, problems


def examples():
    """({kind: (line, message)}, the problems of the blocks that are no message of a kind)."""
    return copy.deepcopy(_examples())


# --------------------------------------------------------------------------------------------
# Validation as JSON Schema means it
# --------------------------------------------------------------------------------------------

def ecma_pattern(validator, pattern, instance, schema):
    """`pattern` with ECMA-262 semantics, as JSON Schema defines it: without the multiline flag,
    `$` matches only at the very end. Python's `$` (and ICU's, under NSRegularExpression) also
    matches before a final newline, which would let "plant-a\\n" pass as an id. Only a final,
    unescaped `$` is translated; the protocol's patterns have no other."""
    if not validator.is_type(instance, "string"):
        return
    source = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
    if not re.search(source, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": ecma_pattern})


def errors_of(kind, message):
    """Why the schema of KIND refuses MESSAGE (formats checked too): one line per error."""
    validator = EcmaValidator(load_schema(kind), format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"at {pointer(*error.absolute_path) or '/'}: {error.message}"
            for error in sorted(validator.iter_errors(message), key=lambda e: list(e.path))]


# --------------------------------------------------------------------------------------------
# Copies of a message with one field changed
# --------------------------------------------------------------------------------------------

DELETE = object()


class Add:
    """A field the example does not have, added for the variant (a plain value replaces one)."""

    def __init__(self, value):
        self.value = value


def mutated(message, path, value):
    """A copy of message with the value at the JSON pointer path replaced, deleted (DELETE) or
    added (Add). Replacing or deleting what the example lacks raises KeyError, so that a variant
    cannot be refused for another reason than the one it is named after."""
    result = copy.deepcopy(message)
    parts = [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]
    parent = result
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = int(parts[-1]) if isinstance(parent, list) else parts[-1]
    if isinstance(value, Add):
        if not isinstance(parent, dict) or last in parent:
            raise KeyError(f"the example already has {path}")
        parent[last] = value.value
        return result
    if isinstance(parent, dict) and last not in parent:
        raise KeyError(f"the example has no {path}")
    if value is DELETE:
        del parent[last]
    else:
        parent[last] = value
    return result
