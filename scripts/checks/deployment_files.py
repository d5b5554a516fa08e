"""The container and Kubernetes files of the repository, read the way test_deploy.py needs them.

Paths, the project's rules that are data (which variables are optional, which products are edge
products), YAML loading, and a small kustomize that renders deploy/base without kubectl.
"""

import copy
import functools
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE = ROOT / "deploy" / "base"
SECRETS_EXAMPLE = BASE / "secrets.example.yaml"
STACK = ROOT / "scripts" / "stack"

# Variables that are optional by design: documented, and named in a comment of compose.yaml and of
# the manifests (how to turn them on), rather than set there. A variable added here needs a reason.
# Ports a service publishes besides its HTTP API, by the variable that sets each: the load
# balancer's HAProxy serves the deployments on its traffic port.
EXTRA_PORTS = {"load-balancer": ["MODELFLEET_LB_TRAFFIC_PORT"]}
OPTIONAL_VARIABLES = {
    # TLS to the broker: only with an mqtts:// URL; the local stack's broker speaks plain MQTT.
    "MODELFLEET_MQTT_CA_FILE",
    "MODELFLEET_MQTT_CERT_FILE",
    "MODELFLEET_MQTT_KEY_FILE",
    # Names a replica on the bus. Its default (host name + pid) is unique per container; a fixed
    # value in compose.yaml would collide under `--scale`. deploy/base sets it to the pod's name.
    "MODELFLEET_INSTANCE_ID",
    # HAProxy's thread count: its default (one per core) suits every environment; the setting is
    # for a machine whose cores the load balancer shares with instances or clients (benchmarks).
    "MODELFLEET_LB_HAPROXY_THREADS",
    # Security settings whose defaults suit (docs/security.md): a service's own broker account
    # (a deployment's broker may take the credentials in the URL instead), the per-key rate, the
    # scrape token, the switch that turns API keys off (experiments, benchmarks), the broker
    # address written into enrolled agents' files, and the registry's first admin key's file.
    "MODELFLEET_MQTT_PASSWORD_FILE",
    "MODELFLEET_MQTT_USERNAME",
    "MODELFLEET_API_RATE",
    "MODELFLEET_API_BURST",
    "MODELFLEET_METRICS_TOKEN_FILE",
    "MODELFLEET_API_AUTH",
    "MODELFLEET_AGENT_MQTT_URL",
    "MODELFLEET_BOOTSTRAP_KEY_FILE",
    # The database role's password from a file; deployments put it in the URL's Secret instead.
    "MODELFLEET_DATABASE_PASSWORD_FILE",
}
# Executables of the image that are not control-plane services. The edge agent runs on the
# users' edge servers, not in the cluster, so deploy/base has no Deployment for it; it has no HTTP
# port (so no /health to check); compose runs it as a simulated edge site (`edge-agent simulate`)
# that talks to the device-gateway over the broker.
EDGE_PRODUCTS = {"edge-agent"}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PriorityClass", "StorageClass", "PersistentVolume", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}
# The image's modelfleet user.
APP_UID = 10001


def rel(path):
    """PATH relative to the repository, for messages."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_yaml_documents(path):
    with open(path, encoding="utf-8") as handle:
        return [document for document in yaml.safe_load_all(handle) if document is not None]


# --------------------------------------------------------------------------------------------
# The project's services, named once: docker/Dockerfile's PRODUCTS build argument.
# --------------------------------------------------------------------------------------------

def dockerfile_products():
    match = re.search(r'^ARG PRODUCTS="([^"]*)"', DOCKERFILE.read_text(), re.MULTILINE)
    if not match:
        raise ValueError('docker/Dockerfile has no ARG PRODUCTS="..." line')
    return match.group(1).split()


def compose_services():
    """(compose file, all its services, the services that run the ModelFleet image); the others
    are infrastructure."""
    compose = load_yaml(COMPOSE)
    services = compose.get("services") or {}
    ours = {
        name: service for name, service in services.items()
        if isinstance(service, dict) and str(service.get("image", "")).startswith("modelfleet")
    }
    return compose, services, ours


def compose_environment(service):
    """A compose service's environment as a dict, whichever of its two spellings it uses."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):  # ["KEY=value", "KEY"]
        return {item.split("=", 1)[0]: (item.split("=", 1)[1] if "=" in item else None)
                for item in environment}
    return dict(environment)


# --------------------------------------------------------------------------------------------
# A small kustomize: the resources of a kustomization, with its namespace and images applied.
# Only the fields deploy/base uses are understood; anything else fails, so that nothing in the
# kustomization goes unchecked by accident.
# --------------------------------------------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}


def render_kustomization(directory):
    """[(source file, resource)] of the kustomization in DIRECTORY, as kustomize would render it."""
    kustomization = load_yaml(directory / "kustomization.yaml") or {}
    unknown = sorted(set(kustomization) - KUSTOMIZATION_FIELDS)
    if unknown:
        raise ValueError(f"{rel(directory)}/kustomization.yaml: fields {unknown} are not "
                         "understood by scripts/checks/deployment_files.py's renderer; teach it first")
    rendered = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        if path.is_dir():
            rendered.extend(render_kustomization(path))
        elif path.is_file():
            rendered.extend((rel(path), document) for document in load_yaml_documents(path))
        else:
            raise FileNotFoundError(f"{rel(directory)}/kustomization.yaml lists {entry}, "
                                    "which does not exist")
    namespace = kustomization.get("namespace")
    for _, resource in rendered:
        if namespace and resource.get("kind") not in CLUSTER_SCOPED:
            resource.setdefault("metadata", {})["namespace"] = namespace
        for container in pod_containers(resource):
            container["image"] = rewrite_image(container.get("image", ""),
                                               kustomization.get("images") or [])
    return rendered


@functools.cache
def _rendered_base():
    return render_kustomization(BASE)


def rendered_base():
    """deploy/base rendered: a fresh copy each time, so that no check sees another's edits."""
    return copy.deepcopy(_rendered_base())


def rewrite_image(image, rules):
    """IMAGE after the kustomization's `images` RULES (newName, newTag, digest)."""
    name, tag = image, None
    if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
    for rule in rules:
        if rule.get("name") == name:
            if "digest" in rule:
                return f"{rule.get('newName', name)}@{rule['digest']}"
            new_tag = rule.get("newTag", tag)
            return rule.get("newName", name) + (f":{new_tag}" if new_tag else "")
    return image


def pod_spec(resource):
    if resource.get("kind") in POD_KINDS:
        return ((resource.get("spec") or {}).get("template") or {}).get("spec") or {}
    if resource.get("kind") == "CronJob":
        return (((resource.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}) \
            .get("template", {}).get("spec") or {}
    if resource.get("kind") == "Pod":
        return resource.get("spec") or {}
    return {}


def pod_containers(resource):
    spec = pod_spec(resource)
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def kind_name(resource):
    return f"{resource.get('kind')}/{(resource.get('metadata') or {}).get('name')}"


def has_database_env(container):
    return any(e.get("name") == "MODELFLEET_DATABASE_URL" for e in container.get("env") or [])


def linked_docs():
    """README.md and the Markdown files under docs/ it links to (relative links)."""
    readme = ROOT / "README.md"
    if not readme.exists():
        return []
    pages = [readme]
    for target in re.findall(r"\]\(([^)#\s]+)", readme.read_text()):
        path = (ROOT / target).resolve()
        if path.suffix == ".md" and path.is_file() and path not in pages:
            pages.append(path)
    return pages
