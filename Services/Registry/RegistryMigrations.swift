import ServiceRuntime

/// The registry's schema. Applied migrations are never edited: add a new one.
enum RegistryMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "model catalogue",
            statements: [
                """
                CREATE TABLE registry.models (
                    seq bigserial UNIQUE,
                    id uuid PRIMARY KEY,
                    name text NOT NULL UNIQUE,
                    description text NOT NULL DEFAULT '',
                    task text NOT NULL,
                    format text NOT NULL,
                    labels text[] NOT NULL DEFAULT '{}',
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                """
                CREATE TABLE registry.model_versions (
                    model_id uuid NOT NULL REFERENCES registry.models (id) ON DELETE CASCADE,
                    version text NOT NULL,
                    artifact_uri text NOT NULL,
                    sha256 text NOT NULL,
                    size_bytes bigint NOT NULL,
                    inputs jsonb NOT NULL DEFAULT '{}',
                    outputs jsonb NOT NULL DEFAULT '{}',
                    default_settings jsonb NOT NULL DEFAULT '{}',
                    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deprecated')),
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (model_id, version)
                )
                """,
            ]
        ),
        Migration(
            version: 2,
            name: "fleet inventory",
            statements: [
                """
                CREATE TABLE registry.sites (
                    id text PRIMARY KEY,
                    name text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                """
                CREATE TABLE registry.servers (
                    id text PRIMARY KEY,
                    site_id text NOT NULL REFERENCES registry.sites (id),
                    name text NOT NULL,
                    agent_version text NOT NULL,
                    cpu_cores double precision NOT NULL,
                    memory_bytes bigint NOT NULL,
                    gpus jsonb NOT NULL DEFAULT '[]',
                    supports_pipelines boolean NOT NULL,
                    online boolean NOT NULL DEFAULT false,
                    last_seen timestamptz,
                    hello_at timestamptz NOT NULL,
                    presence_at timestamptz,
                    created_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                "CREATE INDEX servers_site ON registry.servers (site_id)",
                """
                CREATE TABLE registry.device_groups (
                    id uuid PRIMARY KEY,
                    site_id text NOT NULL REFERENCES registry.sites (id),
                    name text NOT NULL,
                    UNIQUE (site_id, name)
                )
                """,
                """
                CREATE TABLE registry.devices (
                    seq bigserial UNIQUE,
                    id uuid PRIMARY KEY,
                    server_id text NOT NULL REFERENCES registry.servers (id),
                    -- The server's site, copied so that a site's devices page by an index.
                    site_id text NOT NULL REFERENCES registry.sites (id),
                    key text NOT NULL,
                    name text NOT NULL,
                    kind text NOT NULL,
                    enabled boolean NOT NULL DEFAULT true,
                    gone boolean NOT NULL DEFAULT false,
                    group_id uuid REFERENCES registry.device_groups (id) ON DELETE SET NULL,
                    labels text[] NOT NULL DEFAULT '{}',
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (server_id, key)
                )
                """,
                "CREATE INDEX devices_site_seq ON registry.devices (site_id, seq)",
                "CREATE INDEX devices_server_seq ON registry.devices (server_id, seq)",
                "CREATE INDEX devices_group ON registry.devices (group_id)",
                "CREATE INDEX devices_labels ON registry.devices USING gin (labels)",
            ]
        ),
        Migration(
            version: 3,
            name: "agent enrolments",
            statements: [
                """
                CREATE TABLE registry.agent_enrollments (
                    seq bigserial UNIQUE,
                    agent_id text PRIMARY KEY,
                    site_id text NOT NULL,
                    enrolled_at timestamptz NOT NULL DEFAULT now(),
                    revoked_at timestamptz
                )
                """
            ]
        ),
        Migration(
            version: 4,
            name: "API keys",
            statements: [
                """
                CREATE TABLE registry.api_keys (
                    seq bigserial UNIQUE,
                    id uuid PRIMARY KEY,
                    name text NOT NULL,
                    role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
                    created_at timestamptz NOT NULL DEFAULT now(),
                    expires_at timestamptz,
                    revoked_at timestamptz
                )
                """
            ]
        ),
    ]
}
