import ServiceRuntime

/// The orchestrator's schema. Applied migrations are never edited: add a new one.
enum OrchestratorMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "pipeline assignment",
            statements: [
                // What each device should run now, versioned: every change adds a revision.
                """
                CREATE TABLE orchestrator.device_pipelines (
                    device_id uuid PRIMARY KEY,
                    server_id text NOT NULL,
                    site_id text NOT NULL,
                    device_key text NOT NULL,
                    pipelines jsonb NOT NULL,
                    revision integer NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                "CREATE INDEX device_pipelines_by_server ON orchestrator.device_pipelines (server_id)",
                """
                CREATE TABLE orchestrator.device_pipeline_history (
                    device_id uuid NOT NULL,
                    revision integer NOT NULL,
                    pipelines jsonb NOT NULL,
                    operation_id uuid NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (device_id, revision)
                )
                """,
                // One desired-state document per agent; its generation only grows.
                """
                CREATE TABLE orchestrator.agents (
                    agent_id text PRIMARY KEY,
                    generation bigint NOT NULL,
                    applied_generation bigint NOT NULL DEFAULT 0,
                    updated_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                // The audit trail: who did what, when, to which devices (operation_devices).
                """
                CREATE TABLE orchestrator.operations (
                    seq bigserial UNIQUE,
                    id uuid PRIMARY KEY,
                    kind text NOT NULL,
                    actor text NOT NULL,
                    request jsonb NOT NULL,
                    reverts uuid REFERENCES orchestrator.operations (id),
                    retries uuid REFERENCES orchestrator.operations (id),
                    watchdog_seconds integer NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                """
                CREATE TABLE orchestrator.operation_devices (
                    operation_id uuid NOT NULL REFERENCES orchestrator.operations (id),
                    device_id uuid NOT NULL,
                    server_id text NOT NULL,
                    site_id text NOT NULL,
                    device_key text NOT NULL,
                    device_name text NOT NULL,
                    generation bigint NOT NULL,
                    status text NOT NULL CHECK (status IN ('pending', 'delivered', 'applied', 'failed', 'timed_out')),
                    reason text,
                    before jsonb NOT NULL,
                    after jsonb NOT NULL,
                    reachable boolean NOT NULL,
                    deadline timestamptz,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (operation_id, device_id)
                )
                """,
                """
                CREATE INDEX operation_devices_unsettled ON orchestrator.operation_devices (server_id, generation)
                WHERE status IN ('pending', 'delivered')
                """,
                // Written in the same transaction as the change; sent after commit, in order.
                """
                CREATE TABLE orchestrator.outbox (
                    seq bigserial PRIMARY KEY,
                    agent_id text NOT NULL,
                    generation bigint NOT NULL,
                    document text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    sent_at timestamptz
                )
                """,
                "CREATE INDEX outbox_unsent ON orchestrator.outbox (seq) WHERE sent_at IS NULL",
            ]
        ),
        Migration(
            version: 2,
            name: "reports find their devices by index",
            statements: [
                // A report settles timed-out devices too; with them outside the partial index,
                // every report scanned all operation devices (scripts/bench-orchestrator).
                "DROP INDEX orchestrator.operation_devices_unsettled",
                """
                CREATE INDEX operation_devices_unsettled ON orchestrator.operation_devices (server_id, generation)
                WHERE status IN ('pending', 'delivered', 'timed_out')
                """,
            ]
        ),
        Migration(
            version: 3,
            name: "operation devices without a per-row foreign key check",
            statements: [
                // The one statement that writes an operation's devices also wrote its operation
                // row just before, in the same transaction, and operations are never deleted: the
                // check cost a trigger per row, about 100 ms of a 10,000-device commit
                // (docs/decisions.md, 43).
                "ALTER TABLE orchestrator.operation_devices DROP CONSTRAINT operation_devices_operation_id_fkey"
            ]
        ),
        Migration(
            version: 4,
            name: "an operation's pipeline lists stored once, not on every device row",
            statements: [
                // The distinct lists of an operation (the devices of an assignment share one or a
                // few), numbered from 1; each device row names its before and after list. The rows
                // a report updates shrank from about 860 bytes to about 200, and with them the
                // scan that counts an operation's devices by status on every progress poll
                // (docs/decisions.md, 45).
                """
                CREATE TABLE orchestrator.operation_lists (
                    operation_id uuid NOT NULL,
                    position integer NOT NULL,
                    pipelines jsonb NOT NULL,
                    PRIMARY KEY (operation_id, position)
                )
                """,
                """
                INSERT INTO orchestrator.operation_lists (operation_id, position, pipelines)
                SELECT operation_id, row_number() OVER (PARTITION BY operation_id ORDER BY pipelines::text), pipelines
                FROM (SELECT operation_id, before AS pipelines FROM orchestrator.operation_devices
                      UNION SELECT operation_id, after FROM orchestrator.operation_devices) AS lists
                """,
                "ALTER TABLE orchestrator.operation_devices ADD COLUMN before_list integer, ADD COLUMN after_list integer",
                """
                UPDATE orchestrator.operation_devices d SET
                    before_list = (SELECT l.position FROM orchestrator.operation_lists l WHERE l.operation_id = d.operation_id AND l.pipelines = d.before),
                    after_list = (SELECT l.position FROM orchestrator.operation_lists l WHERE l.operation_id = d.operation_id AND l.pipelines = d.after)
                """,
                """
                ALTER TABLE orchestrator.operation_devices
                    ALTER COLUMN before_list SET NOT NULL, ALTER COLUMN after_list SET NOT NULL, DROP COLUMN before, DROP COLUMN after
                """,
                // Rows written before keep the dropped columns' bytes until they are written again
                // (VACUUM FULL, which cannot run in the migration's transaction, frees them).
            ]
        ),
        Migration(
            version: 5,
            name: "an agent's documents found by agent",
            statements: [
                // The reconciler looks up, every second, whether the agents behind their desired
                // generation have a document in flight, and sends the latest one again.
                "CREATE INDEX outbox_by_agent ON orchestrator.outbox (agent_id, seq)"
            ]
        ),
        Migration(
            version: 6,
            name: "an agent's apply under way",
            statements: [
                // The last in-progress report of an agent (docs/device-protocol.md, report): the
                // generation it is applying and how far its downloads are. Shown on the
                // operation's devices; it holds back the reconciler's documents sent again.
                """
                ALTER TABLE orchestrator.agents
                    ADD COLUMN progress_generation bigint, ADD COLUMN progress_bytes bigint, ADD COLUMN progress_total bigint,
                    ADD COLUMN progress_at timestamptz
                """
            ]
        ),
        Migration(
            version: 7,
            name: "deployments",
            statements: [
                // A deployment's current spec (`DeploymentSpec` as JSON); a deleted one keeps its
                // row for the audit trail and frees its name.
                """
                CREATE TABLE orchestrator.deployments (
                    seq bigserial UNIQUE,
                    id uuid PRIMARY KEY,
                    name text NOT NULL,
                    revision integer NOT NULL,
                    spec jsonb NOT NULL,
                    stopped boolean NOT NULL DEFAULT false,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    deleted_at timestamptz
                )
                """,
                "CREATE UNIQUE INDEX deployments_live_name ON orchestrator.deployments (name) WHERE deleted_at IS NULL",
                // Every spec a deployment had, with who changed it and what.
                """
                CREATE TABLE orchestrator.deployment_revisions (
                    deployment_id uuid NOT NULL REFERENCES orchestrator.deployments (id),
                    revision integer NOT NULL,
                    spec jsonb NOT NULL,
                    actor text NOT NULL,
                    change text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (deployment_id, revision)
                )
                """,
                // The instances wanted now: each on a server, or pending with the reason. What an
                // instance holds is kept with it, so placement counts it whatever the spec says now.
                """
                CREATE TABLE orchestrator.deployment_instances (
                    id text PRIMARY KEY,
                    deployment_id uuid NOT NULL REFERENCES orchestrator.deployments (id),
                    revision integer NOT NULL,
                    model_version text NOT NULL,
                    server_id text,
                    state text NOT NULL,
                    reason text,
                    address text,
                    weight integer NOT NULL DEFAULT 100,
                    cpu_cores float8 NOT NULL,
                    memory_bytes bigint NOT NULL,
                    gpu_count integer NOT NULL,
                    gpu_type text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                "CREATE INDEX deployment_instances_by_deployment ON orchestrator.deployment_instances (deployment_id, created_at)",
                "CREATE INDEX deployment_instances_by_server ON orchestrator.deployment_instances (server_id)",
                // What happened to a deployment, newest first when read.
                """
                CREATE TABLE orchestrator.deployment_events (
                    seq bigserial PRIMARY KEY,
                    deployment_id uuid NOT NULL REFERENCES orchestrator.deployments (id),
                    kind text NOT NULL,
                    message text NOT NULL,
                    actor text NOT NULL,
                    at timestamptz NOT NULL DEFAULT now()
                )
                """,
                "CREATE INDEX deployment_events_by_deployment ON orchestrator.deployment_events (deployment_id, seq)",
            ]
        ),
        Migration(
            version: 8,
            name: "deployment instances on the agents",
            statements: [
                // The model version's artifact as the registry gave it at create (`DeploymentArtifact`):
                // what the agents fetch. Deployments made before have none, and are not sent to agents.
                "ALTER TABLE orchestrator.deployments ADD COLUMN artifact jsonb",
                // What the agent last said of the instance: how often it restarted it.
                "ALTER TABLE orchestrator.deployment_instances ADD COLUMN restarts integer NOT NULL DEFAULT 0",
            ]
        ),
        Migration(
            version: 9,
            name: "instances run a revision's spec",
            statements: [
                // The deployment revision whose spec (environment, resources, runtime) the
                // instance runs: behind the deployment's while an edit restarts instances one by one.
                "ALTER TABLE orchestrator.deployment_instances ADD COLUMN spec_revision integer",
                """
                UPDATE orchestrator.deployment_instances i SET spec_revision = d.revision
                FROM orchestrator.deployments d WHERE d.id = i.deployment_id
                """,
                "ALTER TABLE orchestrator.deployment_instances ALTER COLUMN spec_revision SET NOT NULL",
            ]
        ),
        Migration(
            version: 10,
            name: "revisions keep their model version's artifact",
            statements: [
                // What the instances of the revision fetch, so that an update to another model
                // version rolls instance by instance and a rollback brings the old one back. The
                // model version could not change before, so every revision had the deployment's.
                "ALTER TABLE orchestrator.deployment_revisions ADD COLUMN artifact jsonb",
                """
                UPDATE orchestrator.deployment_revisions r SET artifact = d.artifact
                FROM orchestrator.deployments d WHERE d.id = r.deployment_id
                """,
            ]
        ),
        Migration(
            version: 11,
            name: "deployments remember their last progress",
            statements: [
                // When the deployment last made progress: its revision changed, or the roller moved
                // an instance to it (the one before being ready). A roll with no progress for its
                // `progress_deadline_seconds` is rolled back.
                "ALTER TABLE orchestrator.deployments ADD COLUMN progress_at timestamptz NOT NULL DEFAULT now()",
                // While a change restarts instances: the last revision rolled out whole, where a
                // stalled roll goes back to; null when no roll is under way.
                "ALTER TABLE orchestrator.deployments ADD COLUMN rolling_from integer",
            ]
        ),
        Migration(
            version: 12,
            name: "canary updates keep their step",
            statements: [
                // A canary update under way: the index of its step in `update_strategy.canary_steps`
                // (null otherwise), when the step began, whether an operator paused it, the last
                // analysis of the new version's figures and how many checks in a row failed.
                "ALTER TABLE orchestrator.deployments ADD COLUMN canary_step integer",
                "ALTER TABLE orchestrator.deployments ADD COLUMN step_at timestamptz",
                "ALTER TABLE orchestrator.deployments ADD COLUMN paused boolean NOT NULL DEFAULT false",
                "ALTER TABLE orchestrator.deployments ADD COLUMN analysis text",
                "ALTER TABLE orchestrator.deployments ADD COLUMN failed_checks integer NOT NULL DEFAULT 0",
                // The time of the last metrics snapshot judged: each snapshot is one check.
                "ALTER TABLE orchestrator.deployments ADD COLUMN judged_at timestamptz",
                // Why the orchestrator rolled the deployment back by itself (progress deadline or
                // analysis): the deployment is `degraded` until an operator's next change.
                "ALTER TABLE orchestrator.deployments ADD COLUMN rolled_back_because text",
            ]
        ),
    ]
}
