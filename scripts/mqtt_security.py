#!/usr/bin/env python3
"""The broker's first access-control state: Mosquitto's dynamic security plugin's file.

Usage: scripts/mqtt_security.py CONFIG_FILE CREDENTIALS_DIR

Writes CONFIG_FILE (the plugin's JSON, read by the broker at start and rewritten by the plugin on
every change) with ModelFleet's roles and one client per service, unless it exists: from then on
the plugin owns it, and agents enrolled through the registry live in it. Each client's password
is in CREDENTIALS_DIR/<name> (mode 0600), made here when missing, so that several brokers can
share one set of credentials (the test suite's do).

Usernames: `modelfleet:<service>` for the services, `modelfleet:admin` for operators' tools and
the tests' observers, and the agent id for each enrolled agent (an agent id cannot hold a colon,
so the two never meet). docs/security.md describes each role.
"""

import base64
import hashlib
import json
import os
import secrets
import sys

# The services and the roles each holds, beside `modelfleet:service`.
SERVICES = {
    "registry": ["modelfleet:enroller"],
    "orchestrator": [],
    "device-gateway": ["modelfleet:gateway"],
    "autoscaler": [],
    "metrics-aggregator": [],
    "load-balancer": [],
}

ROOT = "modelfleet/v1"
CONTROL = "$CONTROL/dynamic-security/v1"


def acl(kind, topic, allow=True):
    return {"acltype": kind, "topic": topic, "allow": allow}


def read_write(*topics):
    """Publish, subscribe (also through shared subscriptions) and receive on each topic."""
    acls = []
    for topic in topics:
        acls += [
            acl("publishClientSend", topic),
            acl("subscribePattern", topic),
            acl("subscribePattern", f"$share/+/{topic}"),
        ]
    return acls


ROLES = {
    # Everything, and the plugin's own control topic: operators' tools, tests' observers.
    "modelfleet:admin": read_write("#")
    + [
        acl("publishClientSend", "$CONTROL/dynamic-security/#"),
        acl("subscribePattern", "$CONTROL/dynamic-security/#"),
        acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
        acl("subscribePattern", "$SYS/#"),
        acl("publishClientReceive", "$SYS/#"),
    ],
    # Every service: the internal topics, the fleet's events, the services' presence and the MQTT 5
    # replies.
    "modelfleet:service": read_write(f"{ROOT}/internal/#", f"{ROOT}/events/#", f"{ROOT}/services/#", f"{ROOT}/replies/#"),
    # The device gateway: every agent's topics (the only service that reads or writes them).
    "modelfleet:gateway": read_write(f"{ROOT}/agents/#"),
    # The registry: agents' enrolment and revocation through the plugin.
    "modelfleet:enroller": [
        acl("publishClientSend", CONTROL),
        acl("subscribeLiteral", f"{CONTROL}/response"),
        acl("publishClientReceive", f"{CONTROL}/response"),
    ],
}


def password_hash(password):
    """The plugin's format: PBKDF2-HMAC-SHA512, a 12-byte salt, 101 iterations (its default)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": 101,
    }


def credential(directory, name):
    """The password in DIRECTORY/NAME, made (32 random bytes, URL-safe base64) when missing."""
    path = os.path.join(directory, name)
    try:
        with open(path, encoding="utf-8") as file:
            password = file.read().strip()
        if password:
            return password
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(32)
    descriptor = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    os.replace(path + ".new", path)
    return password


def configuration(credentials):
    clients = [
        {
            "username": "modelfleet:admin",
            "textName": "operators' tools",
            "roles": [{"rolename": "modelfleet:admin"}],
            **password_hash(credential(credentials, "admin")),
        }
    ]
    for service, roles in SERVICES.items():
        clients.append(
            {
                "username": f"modelfleet:{service}",
                "textName": f"the {service} service",
                "roles": [{"rolename": role} for role in ["modelfleet:service", *roles]],
                **password_hash(credential(credentials, service)),
            }
        )
    return {
        "clients": clients,
        "groups": [],
        "roles": [{"rolename": name, "acls": acls} for name, acls in ROLES.items()],
        # What no role allows is refused: nothing sent, nothing subscribed.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} CONFIG_FILE CREDENTIALS_DIR")
    config_file, credentials = sys.argv[1:]
    os.makedirs(credentials, mode=0o700, exist_ok=True)
    if os.path.exists(config_file):
        return
    document = configuration(credentials)
    descriptor = os.open(config_file + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=1)
    os.replace(config_file + ".new", config_file)


if __name__ == "__main__":
    main()
