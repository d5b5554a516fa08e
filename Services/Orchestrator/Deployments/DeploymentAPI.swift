import FleetContract
import Foundation
import Hummingbird
import Logging
import ServiceRuntime

/// The deployments' REST API (`/v1/deployments`, in `openapi.yaml`): create, read, edit, scale,
/// stop, start and delete, update the model version and roll back, with events and revisions. Every route is in ``routes``, which the
/// contract test reads with the orchestrator's other routes.
struct DeploymentAPI: Sendable {
    let store: PostgresDeploymentStore
    let registry: any RegistryLookup
    let logs: any InstanceLogSource
    let logger: Logger

    typealias Route = APIRoute<DeploymentAPI>

    static let routes: [Route] = [
        Route(.post, "/v1/deployments") { api, request, context in try await api.create(request, context) },
        Route(.get, "/v1/deployments") { api, request, context in try await api.list(request, context) },
        Route(.get, "/v1/deployments/{deployment}") { api, request, context in try await api.get(request, context) },
        Route(.patch, "/v1/deployments/{deployment}") { api, request, context in try await api.edit(request, context) },
        Route(.delete, "/v1/deployments/{deployment}") { api, request, context in try await api.delete(request, context) },
        Route(.post, "/v1/deployments/{deployment}/scale") { api, request, context in try await api.scale(request, context) },
        Route(.post, "/v1/deployments/{deployment}/stop") { api, request, context in try await api.setStopped(true, request, context) },
        Route(.post, "/v1/deployments/{deployment}/start") { api, request, context in try await api.setStopped(false, request, context) },
        Route(.post, "/v1/deployments/{deployment}/update") { api, request, context in try await api.updateModel(request, context) },
        Route(.post, "/v1/deployments/{deployment}/rollback") { api, request, context in try await api.rollback(request, context) },
        Route(.post, "/v1/deployments/{deployment}/promote") { api, request, context in try await api.canary(.promote, request, context) },
        Route(.post, "/v1/deployments/{deployment}/pause") { api, request, context in try await api.canary(.pause, request, context) },
        Route(.post, "/v1/deployments/{deployment}/resume") { api, request, context in try await api.canary(.resume, request, context) },
        Route(.get, "/v1/deployments/{deployment}/events") { api, request, context in try await api.events(request, context) },
        Route(.get, "/v1/deployments/{deployment}/revisions") { api, request, context in try await api.revisions(request, context) },
        Route(.get, "/v1/deployments/{deployment}/instances/{instance}/logs") { api, request, context in
            try await api.instanceLogs(request, context)
        },
    ]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.add(Self.routes, for: self)
    }

    // MARK: Handlers

    private struct NewDeployment: Decodable {
        var name: String
        var spec: DeploymentSpec

        private enum CodingKeys: String, CodingKey { case name }

        init(from decoder: any Decoder) throws {
            name = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .name)
            spec = try DeploymentSpec(from: decoder)
        }
    }

    func create(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let new = try await JSONBody.decode(NewDeployment.self, from: request, context: context)
        let name = try DeploymentSpec.validateName(new.name)
        let servers = try await registry.servers()
        let spec = try new.spec.validated(gpuTypes: Self.gpuTypes(of: servers))
        let version = try await activeModelVersion(of: spec)
        let deployment = try await store.create(
            name: name, spec: spec, artifact: DeploymentArtifact(version), actor: OrchestratorAPI.actor, servers: servers.map(\.placement))
        logger.info("deployment created", metadata: ["deployment": "\(name)", "instances": "\(deployment.instances.count)"])
        return try respond(DeploymentView(deployment: deployment), .created, request, context)
    }

    func list(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (limit, cursor) = try OrchestratorAPI.paging(request)
        let (items, next) = try await store.list(limit: limit, after: cursor ?? 0)
        return try respond(Page(items: items.map(DeploymentView.init), nextCursor: next.map(String.init)), .ok, request, context)
    }

    func get(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        try respond(DeploymentView(deployment: try await existing(context)), .ok, request, context)
    }

    private struct EditAnswer: Encodable, Sendable {
        var deployment: DeploymentView
        var restart: Bool
    }

    /// A JSON merge of the body into the spec; see the contract for what may change.
    func edit(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let current = try await existing(context)
        let body = try await JSONBody.decode(JSONValue.self, from: request, context: context)
        guard case .object(let patch) = body else { throw APIError.invalid(field: "(body)", "must be a JSON object of the fields to change") }
        if patch["name"] != nil { throw APIError.unacceptable("name", "cannot be changed; create a deployment with the new name") }
        if let unknown = patch.keys.sorted().first(where: { !Self.editable.contains($0) && $0 != "model_id" && $0 != "model_version" }) {
            throw APIError.invalid(field: unknown, "is not a field of a deployment")
        }
        if patch["model_id"] != nil {
            throw APIError.unacceptable("model_id", "cannot be changed: a deployment serves one model; create another deployment for another")
        }
        if patch["model_version"] != nil {
            throw APIError.unacceptable("model_version", "is changed by Update Model: POST /v1/deployments/\(current.name)/update")
        }
        let merged = Self.merge(try JSONValue(encoding: current.spec), with: body)
        let edited: DeploymentSpec
        do {
            edited = try ContractCoding.decoder.decode(DeploymentSpec.self, from: try ContractCoding.encoder.encode(merged))
        } catch let error as DecodingError {
            let problem = ContractError(decodingError: error)
            throw APIError.invalid(field: problem.field, problem.reason)
        }
        let servers = try await registry.servers()
        let spec = try edited.validated(gpuTypes: Self.gpuTypes(of: servers).union(current.spec.resources.gpuType.map { [$0] } ?? []))
        let changed = patch.keys.sorted().filter { key in
            (try? JSONValue(encoding: current.spec))?.member(key) != (try? JSONValue(encoding: spec))?.member(key)
        }
        guard !changed.isEmpty else { throw APIError(.conflict, code: "no_change", message: "the edit changes nothing") }
        guard
            let deployment = try await store.update(
                name: current.name, spec: spec, actor: OrchestratorAPI.actor, kind: "edited", change: "edited \(changed.joined(separator: ", "))",
                servers: servers.map(\.placement))
        else { throw Self.notFound(current.name) }
        let restart = spec.restartsInstances(comparedTo: current.spec)
        return try respond(EditAnswer(deployment: DeploymentView(deployment: deployment), restart: restart), .ok, request, context)
    }

    /// The fields an edit may change.
    private static let editable: Set<String> = [
        "description", "environment", "resources", "env", "scaling", "load_balancer", "update_strategy", "runtime",
    ]

    private struct ScaleBody: Decodable {
        var replicas: Int
    }

    func scale(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let current = try await existing(context)
        let body = try await JSONBody.decode(ScaleBody.self, from: request, context: context)
        let scaling = current.spec.scaling
        guard (scaling.minReplicas...scaling.maxReplicas).contains(body.replicas) else {
            throw APIError.unacceptable(
                "replicas", "must be within min_replicas and max_replicas (\(scaling.minReplicas) to \(scaling.maxReplicas)); edit them to go further"
            )
        }
        guard !current.stopped else {
            throw APIError(.conflict, code: "deployment_stopped", message: "deployment '\(current.name)' is stopped; start it first")
        }
        guard body.replicas != scaling.replicas else { return try respond(DeploymentView(deployment: current), .ok, request, context) }
        var spec = current.spec
        spec.scaling.replicas = body.replicas
        let servers = try await registry.servers()
        guard
            let deployment = try await store.update(
                name: current.name, spec: spec, actor: OrchestratorAPI.actor, kind: "scaled",
                change: "scaled from \(scaling.replicas) to \(body.replicas)",
                servers: servers.map(\.placement))
        else { throw Self.notFound(current.name) }
        return try respond(DeploymentView(deployment: deployment), .ok, request, context)
    }

    private struct UpdateBody: Decodable {
        var modelVersion: String

        enum CodingKeys: String, CodingKey {
            case modelVersion = "model_version"
        }
    }

    /// Update Model: new instances of another version of the deployment's model replace the old
    /// ones, by a rolling update or, as the strategy says, a canary or blue-green update
    /// (``RestartRoller``).
    func updateModel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let current = try await existing(context)
        let body = try await JSONBody.decode(UpdateBody.self, from: request, context: context)
        let staged = current.spec.stagedSteps != nil
        guard body.modelVersion != current.spec.modelVersion else {
            throw APIError(.conflict, code: "no_change", message: "deployment '\(current.name)' runs model version \(body.modelVersion) already")
        }
        var spec = current.spec
        spec.modelVersion = body.modelVersion
        let version = try await activeModelVersion(of: spec)
        guard
            let deployment = try await store.update(
                name: current.name, spec: spec, artifact: DeploymentArtifact(version), actor: OrchestratorAPI.actor,
                kind: "updated",
                change: "model version \(current.spec.modelVersion) to \(spec.modelVersion), "
                    + Self.strategyDescription(spec),
                servers: try await registry.servers().map(\.placement), staged: staged)
        else { throw Self.notFound(current.name) }
        logger.info("deployment update", metadata: ["deployment": "\(current.name)", "version": "\(spec.modelVersion)"])
        return try respond(DeploymentView(deployment: deployment), .ok, request, context)
    }

    private struct RollbackBody: Decodable {
        var revision: Int?
    }

    /// Back to what an earlier revision ran (`revision`; by default the newest earlier one that ran
    /// something else): its model version, environment, resources and settings, as a new revision.
    /// The replicas and autoscaling stay as they are now, as `kubectl rollout undo` keeps them.
    func rollback(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let current = try await existing(context)
        let body = try await JSONBody.decodeIfPresent(RollbackBody.self, from: request, context: context) ?? RollbackBody(revision: nil)
        // Whatever the strategy, a rollback is a rolling update; a canary or blue-green update under
        // way ends at once (its new instances go, the old ones take every request again).
        guard let revisions = try await store.revisions(of: current.name) else { throw Self.notFound(current.name) }
        func runnable(_ spec: DeploymentSpec) -> DeploymentSpec {
            var spec = spec
            spec.scaling = current.spec.scaling
            return spec
        }
        let target: DeploymentRevision
        if let number = body.revision {
            guard let found = revisions.first(where: { $0.revision == number }), number < current.revision else {
                throw APIError.unacceptable(
                    "revision", "deployment '\(current.name)' has no earlier revision \(number) (it is at revision \(current.revision))")
            }
            target = found
        } else {
            guard let found = revisions.first(where: { $0.revision < current.revision && runnable($0.spec) != current.spec }) else {
                throw APIError(
                    .conflict, code: "no_change", message: "deployment '\(current.name)' has no earlier revision that ran something else")
            }
            target = found
        }
        let spec = runnable(target.spec)
        guard spec != current.spec else {
            throw APIError(
                .conflict, code: "no_change", message: "revision \(target.revision) runs what revision \(current.revision) runs (replicas are kept)")
        }
        guard
            let deployment = try await store.update(
                name: current.name, spec: spec, artifact: target.artifact, actor: OrchestratorAPI.actor,
                kind: "rolled_back", change: "rolled back to revision \(target.revision) (model version \(spec.modelVersion))",
                servers: try await registry.servers().map(\.placement))
        else { throw Self.notFound(current.name) }
        logger.info("deployment rolled back", metadata: ["deployment": "\(current.name)", "revision": "\(target.revision)"])
        return try respond(DeploymentView(deployment: deployment), .ok, request, context)
    }

    private struct PromoteBody: Decodable {
        var full: Bool?
    }

    /// `promote` (`{"full": true}` for the whole way), `pause` and `resume` of the canary or
    /// blue-green update under way; 409 `no_canary` without one.
    func canary(_ command: PostgresDeploymentStore.CanaryCommand, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try Self.name(context)
        var command = command
        if command == .promote, try await JSONBody.decodeIfPresent(PromoteBody.self, from: request, context: context)?.full == true {
            command = .promoteFully
        }
        guard let deployment = try await store.command(command, name: name, actor: OrchestratorAPI.actor) else { throw Self.notFound(name) }
        logger.info("deployment canary", metadata: ["deployment": "\(name)", "command": "\(command.rawValue)"])
        return try respond(DeploymentView(deployment: deployment), .ok, request, context)
    }

    func setStopped(_ stopped: Bool, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try Self.name(context)
        // A stop frees room that pending instances of other deployments may take; a start needs
        // the servers, a stop goes on without them.
        let servers = stopped ? try await answeringServers() : try await registry.servers().map(\.placement)
        guard let deployment = try await store.setStopped(name: name, stopped, actor: OrchestratorAPI.actor, servers: servers) else {
            throw Self.notFound(name)
        }
        return try respond(DeploymentView(deployment: deployment), .ok, request, context)
    }

    func delete(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try Self.name(context)
        guard request.uri.queryParameters["confirm"] == "true" else {
            throw APIError.invalid(field: "confirm", "deleting a deployment shuts its instances down and removes it: confirm=true is required")
        }
        guard try await store.delete(name: name, actor: OrchestratorAPI.actor, servers: try await answeringServers()) else {
            throw Self.notFound(name)
        }
        logger.info("deployment deleted", metadata: ["deployment": "\(name)"])
        return Response(status: .noContent)
    }

    func events(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try Self.name(context)
        var limit = 100
        if let text = request.uri.queryParameters["limit"] {
            guard let value = Int(String(text)), (1...1_000).contains(value) else { throw APIError.invalid(field: "limit", "must be 1 to 1000") }
            limit = value
        }
        guard let events = try await store.events(of: name, limit: limit) else { throw Self.notFound(name) }
        return try respond(Page(items: events, nextCursor: nil), .ok, request, context)
    }

    func revisions(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try Self.name(context)
        guard let revisions = try await store.revisions(of: name) else { throw Self.notFound(name) }
        return try respond(Page(items: revisions, nextCursor: nil), .ok, request, context)
    }

    private struct LogsAnswer: Encodable, Sendable {
        var instanceID: String
        var serverID: String
        var lines: [String]

        enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case serverID = "server_id"
            case lines
        }
    }

    /// The last lines of an instance's output, from its agent.
    func instanceLogs(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await existing(context)
        guard let id = context.parameters.get("instance") else { throw APIError.invalid(field: "instance", "an instance id is required") }
        var tail = 200
        if let text = request.uri.queryParameters["tail"] {
            guard let value = Int(String(text)), (1...1_000).contains(value) else { throw APIError.invalid(field: "tail", "must be 1 to 1000") }
            tail = value
        }
        guard let instance = deployment.instances.first(where: { $0.id == id }) else {
            throw APIError.notFound("deployment '\(deployment.name)' has no instance '\(id)'")
        }
        guard let server = instance.serverID else {
            throw APIError(
                .conflict, code: "instance_not_placed", message: "instance \(id) is pending (\(instance.reason ?? "no server")): it has no logs yet")
        }
        let lines = try await logs.lines(of: id, on: server, tail: tail)
        return try respond(LogsAnswer(instanceID: id, serverID: server, lines: lines), .ok, request, context)
    }

    // MARK: Helpers

    private static func name(_ context: BasicRequestContext) throws -> String {
        guard let name = context.parameters.get("deployment") else { throw APIError.invalid(field: "deployment", "a deployment name is required") }
        return name
    }

    /// How an update of `spec` goes, for its event: "rolling, …", "canary, 10, 25, 50, 100 % of
    /// the requests, 60 s a step, errors at most 5 %" or "blue-green, switched after 300 s, …".
    static func strategyDescription(_ spec: DeploymentSpec) -> String {
        let strategy = spec.updateStrategy
        func number(_ value: Double) -> String { String(format: "%g", value) }
        var limits = ["errors at most \(number(strategy.analysis.maxErrorPercent)) %"]
        if let p99 = strategy.analysis.maxP99Ms { limits.append("p99 at most \(number(p99)) ms") }
        if let ratio = strategy.analysis.maxP99Ratio { limits.append("p99 at most \(number(ratio)) × the stable version's") }
        switch strategy.type {
        case .rolling:
            return rollingDescription(spec)
        case .canary:
            let steps = (spec.stagedSteps ?? []).map(String.init).joined(separator: ", ")
            return "canary, \(steps) % of the requests, \(strategy.stepSeconds) s a step, \(limits.joined(separator: ", "))"
        case .blueGreen:
            let bake = strategy.bakeSeconds == 0 ? "switched on promote" : "switched after \(strategy.bakeSeconds) s"
            return "blue-green, \(bake), the old set kept \(strategy.scaleDownDelaySeconds) s after, \(limits.joined(separator: ", "))"
        }
    }

    /// How a rolling update of `spec` goes, for its event: "rolling, 1 new instance(s) beside the
    /// old at a time, none unavailable".
    static func rollingDescription(_ spec: DeploymentSpec) -> String {
        let roll = RollingUpdate(replicas: spec.scaling.replicas, strategy: spec.updateStrategy)
        let surge = roll.maxSurge == 0 ? "no instance above \(roll.replicas)" : "\(roll.maxSurge) new instance(s) beside the old at a time"
        return "rolling, \(surge), \(roll.maxUnavailable == 0 ? "none" : "at most \(roll.maxUnavailable)") unavailable"
    }

    private static func notFound(_ name: String) -> APIError { APIError.notFound("no deployment named '\(name)'") }

    private func existing(_ context: BasicRequestContext) async throws -> Deployment {
        let name = try Self.name(context)
        guard let deployment = try await store.deployment(named: name) else { throw Self.notFound(name) }
        return deployment
    }

    /// The servers, for placing pending instances after a change that frees room; none when the
    /// registry does not answer (they are placed at the next change or server presence instead).
    private func answeringServers() async throws -> [Placement.Server] {
        do {
            return try await registry.servers().map(\.placement)
        } catch let error as DomainError {
            logger.info("stopping without placing pending instances: the registry did not answer", metadata: ["error": "\(error)"])
            return []
        }
    }

    static func gpuTypes(of servers: [RegistryServer]) -> Set<String> {
        Set(servers.flatMap { $0.gpus.filter { $0.count > 0 }.map(\.type) })
    }

    /// The model version, which must exist in the registry and be active, as for a pipeline stage.
    private func activeModelVersion(of spec: DeploymentSpec) async throws -> RegistryModelVersion {
        let found = try await registry.modelVersion(modelID: spec.modelID, version: spec.modelVersion)
        return try RegistryModelVersion.active(found, modelID: spec.modelID, version: spec.modelVersion, field: "model_version")
    }

    /// A JSON merge: objects merge member by member, anything else replaces. Unlike RFC 7386, a
    /// `null` is kept: it resets a field to its default, or clears an optional one (an autoscaling
    /// target), which removing the member could not tell apart.
    static func merge(_ base: JSONValue, with patch: JSONValue) -> JSONValue {
        guard case .object(let changes) = patch, case .object(var result) = base else { return patch }
        for (key, value) in changes {
            result[key] = merge(result[key] ?? .null, with: value)
        }
        return .object(result)
    }

    private func respond(
        _ value: some Encodable & Sendable, _ status: HTTPResponse.Status, _ request: Request, _ context: BasicRequestContext
    ) throws -> Response {
        try JSONResponse(value, status: status, encoder: ContractCoding.encoder).response(from: request, context: context)
    }
}

extension JSONValue {
    /// The value as the contract encodes `value`.
    init(encoding value: some Encodable) throws {
        self = try ContractCoding.decoder.decode(JSONValue.self, from: try ContractCoding.encoder.encode(value))
    }

    /// An object's member, nil for anything else.
    func member(_ key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }
}
