import DeviceProtocol
import FleetContract
import Foundation
import Logging
import PostgresNIO

/// Writes agents' desired-state documents to the outbox inside the caller's transaction: each
/// agent's next generation and its whole document, its devices' pipelines and its deployment
/// instances. The operations and the deployments both change what an agent runs; both write its
/// document here, so that neither forgets the other's part.
struct DesiredStateOutbox: Sendable {
    let logger: Logger

    /// Each agent's next desired-state generation (1 for a new agent); locks the agents' rows, in
    /// the order of their ids so that two transactions never wait on each other's.
    func nextGenerations(of agents: [String], on connection: PostgresConnection) async throws -> [String: Int64] {
        var generations: [String: Int64] = [:]
        for try await (agent, generation) in try await connection.query(
            """
            INSERT INTO orchestrator.agents (agent_id, generation) SELECT a, 1 FROM unnest(\(agents.sorted())::text[]) AS a
            ON CONFLICT (agent_id) DO UPDATE SET generation = orchestrator.agents.generation + 1, updated_at = now()
            RETURNING agent_id, generation
            """, logger: logger
        ).decode((String, Int64).self) {
            generations[agent] = generation
        }
        return generations
    }

    /// New documents for `agents` of what they run now, as stored: after a change of deployment
    /// instances.
    func enqueue(agents: [String], on connection: PostgresConnection) async throws {
        guard !agents.isEmpty else { return }
        let generations = try await nextGenerations(of: agents, on: connection)
        try await enqueueDocuments(of: agents, at: generations, changed: [:], exceptDevices: [], correlationID: nil, on: connection)
    }

    /// Writes each agent's whole desired-state document at its new generation to the outbox:
    /// `changed` devices' pipelines as given, every other device of the agent (not in
    /// `exceptDevices`) as stored, and the agent's deployment instances.
    func enqueueDocuments(
        of agents: [String], at generations: [String: Int64], changed: [String: [(key: String, pipelines: String)]], exceptDevices: [UUID],
        correlationID: UUID?, on connection: PostgresConnection
    ) async throws {
        var assignments = changed
        for try await (server, key, text) in try await connection.query(
            """
            SELECT server_id, device_key, pipelines::text FROM orchestrator.device_pipelines
            WHERE server_id = ANY(\(agents)) AND NOT (device_id = ANY(\(exceptDevices))) AND pipelines <> '[]'::jsonb
            """,
            logger: logger
        ).decode((String, String, String).self) {
            assignments[server, default: []].append((key, text))
        }
        let instances = try await instances(of: agents, on: connection)
        let documents = try agents.map { agent in
            try DesiredStateDocument.encode(
                agentID: agent, generation: generations[agent]!, devices: (assignments[agent] ?? []).sorted { $0.key < $1.key },
                instances: instances[agent] ?? [], correlationID: correlationID)
        }
        try await connection.query(
            """
            INSERT INTO orchestrator.outbox (agent_id, generation, document)
            SELECT * FROM unnest(\(agents)::text[], \(agents.map { generations[$0]! })::bigint[], \(documents)::text[])
            """, logger: logger)
    }

    /// The instances placed on each of `agents` of deployments that run (not stopped, not
    /// deleted), in id order, each with the spec of the revision it runs (`spec_revision`).
    private func instances(of agents: [String], on connection: PostgresConnection) async throws -> [String: [DesiredState.Instance]] {
        var found: [String: [DesiredState.Instance]] = [:]
        var specs: [String: DeploymentSpec] = [:]
        var artifacts: [String: DeploymentArtifact] = [:]
        for try await (server, id, name, revision, specRevision, version, specText, artifactText) in try await connection.query(
            """
            SELECT i.server_id, i.id, d.name, i.revision, i.spec_revision, i.model_version, r.spec::text,
                   COALESCE(r.artifact, d.artifact)::text
            FROM orchestrator.deployment_instances i JOIN orchestrator.deployments d ON d.id = i.deployment_id
            JOIN orchestrator.deployment_revisions r ON r.deployment_id = i.deployment_id AND r.revision = i.spec_revision
            WHERE i.server_id = ANY(\(agents)) AND NOT d.stopped AND d.deleted_at IS NULL AND d.artifact IS NOT NULL
            ORDER BY i.id
            """, logger: logger
        ).decode((String, String, String, Int, Int, String, String, String).self) {
            if specs[specText] == nil { specs[specText] = try ContractCoding.decoder.decode(DeploymentSpec.self, from: Data(specText.utf8)) }
            if artifacts[artifactText] == nil {
                artifacts[artifactText] = try ContractCoding.decoder.decode(DeploymentArtifact.self, from: Data(artifactText.utf8))
            }
            found[server, default: []].append(
                DesiredState.Instance(
                    spec: specs[specText]!, artifact: artifacts[artifactText]!, instanceID: id, deployment: name, revision: revision,
                    specRevision: specRevision, version: version))
        }
        return found
    }
}

/// A deployment's model version as the registry described it when the deployment was created:
/// what its instances fetch and run (`orchestrator.deployments.artifact`).
struct DeploymentArtifact: Codable, Sendable, Equatable {
    var modelName: String
    var artifactURI: String
    var sha256: String

    init(modelName: String, artifactURI: String, sha256: String) {
        self.modelName = modelName
        self.artifactURI = artifactURI
        self.sha256 = sha256
    }

    init(_ version: RegistryModelVersion) {
        self.init(modelName: version.modelName, artifactURI: version.artifactURI, sha256: version.sha256)
    }

    private enum CodingKeys: String, CodingKey {
        case modelName = "model_name"
        case artifactURI = "artifact_uri"
        case sha256
    }
}

extension DeploymentSpec {
    /// Whether going from `old` to this spec changes what the agents run for an instance (its
    /// resources, environment, runtime or health check path): agents restart such instances.
    func restartsInstances(comparedTo old: DeploymentSpec) -> Bool {
        let artifact = DeploymentArtifact(modelName: "", artifactURI: "", sha256: "")
        func entry(_ spec: DeploymentSpec) -> DesiredState.Instance {
            DesiredState.Instance(
                spec: spec, artifact: artifact, instanceID: "", deployment: "", revision: 1, specRevision: 1, version: spec.modelVersion)
        }
        return entry(self) != entry(old)
    }
}

extension DesiredState.Instance {
    /// The instance as an agent runs it: the deployment's spec now, at the instance's version.
    init(
        spec: DeploymentSpec, artifact: DeploymentArtifact, instanceID: String, deployment: String, revision: Int, specRevision: Int, version: String
    ) {
        let resources = spec.resources
        self.init(
            instanceID: instanceID, deployment: deployment, revision: revision, specRevision: specRevision, modelID: spec.modelID,
            modelName: artifact.modelName,
            version: version, artifactURI: artifact.artifactURI, sha256: artifact.sha256,
            resources: Resources(
                cpuCores: resources.cpuCores, memoryBytes: resources.memoryBytes, gpuCount: resources.gpuCount,
                gpuType: resources.gpuCount > 0 ? resources.gpuType : nil),
            env: spec.env,
            runtime: Runtime(kind: spec.runtime.kind == .process ? .process : .builtin, command: spec.runtime.command),
            healthCheckPath: spec.loadBalancer.healthCheckPath)
    }
}
