import FleetContract
import Foundation
import Hummingbird
import Logging
import OpenAPIRuntime
import OrchestratorContract
import ServiceRuntime

/// The deployments' REST API (`/v1/deployments`, in `openapi.yaml`): create, read, edit, scale,
/// stop, start and delete, update the model version and roll back, with events and revisions.
/// ``OrchestratorAPI`` serves it, the generated operations through these methods, and the edit,
/// a JSON merge patch, as a plain route (``plainRoutes``).
struct DeploymentAPI: Sendable {
    let store: PostgresDeploymentStore
    let registry: any RegistryLookup
    let logs: any InstanceLogSource
    let logger: Logger

    typealias Route = APIRoute<DeploymentAPI>

    /// The routes served by hand, each documented in openapi.yaml.
    static let plainRoutes: [Route] = [
        Route(.patch, "/v1/deployments/{deployment}") { api, request, context in try await api.edit(request, context) }
    ]

    // MARK: Handlers

    struct NewDeployment: Decodable {
        var name: String
        var spec: DeploymentSpec

        private enum CodingKeys: String, CodingKey { case name }

        init(from decoder: any Decoder) throws {
            name = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .name)
            spec = try DeploymentSpec(from: decoder)
        }
    }

    func create(_ new: NewDeployment) async throws -> DeploymentView {
        let name = try DeploymentSpec.validateName(new.name)
        let servers = try await registry.servers()
        let spec = try new.spec.validated(gpuTypes: Self.gpuTypes(of: servers))
        let version = try await activeModelVersion(of: spec)
        let deployment = try await store.create(
            name: name, spec: spec, artifact: DeploymentArtifact(version), actor: OrchestratorAPI.actor, servers: servers.map(\.placement))
        logger.info("deployment created", metadata: ["deployment": "\(name)", "instances": "\(deployment.instances.count)"])
        return DeploymentView(deployment: deployment)
    }

    func list(limit: Int?, cursor: String?) async throws -> Page<DeploymentView> {
        let (limit, cursor) = try OrchestratorAPI.paging(limit: limit, cursor: cursor)
        let (items, next) = try await store.list(limit: limit, after: cursor ?? 0)
        return Page(items: items.map(DeploymentView.init), nextCursor: next.map(String.init))
    }

    func get(_ name: String) async throws -> DeploymentView {
        DeploymentView(deployment: try await existing(name))
    }

    private struct EditAnswer: Encodable, Sendable {
        var deployment: DeploymentView
        var restart: Bool
    }

    /// A JSON merge of the body into the spec; see the contract for what may change.
    func edit(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let current = try await existing(try Self.name(context))
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

    func scale(_ name: String, replicas: Int) async throws -> DeploymentView {
        let current = try await existing(name)
        let scaling = current.spec.scaling
        guard (scaling.minReplicas...scaling.maxReplicas).contains(replicas) else {
            throw APIError.unacceptable(
                "replicas", "must be within min_replicas and max_replicas (\(scaling.minReplicas) to \(scaling.maxReplicas)); edit them to go further"
            )
        }
        guard !current.stopped else {
            throw APIError(.conflict, code: "deployment_stopped", message: "deployment '\(current.name)' is stopped; start it first")
        }
        guard replicas != scaling.replicas else { return DeploymentView(deployment: current) }
        var spec = current.spec
        spec.scaling.replicas = replicas
        let servers = try await registry.servers()
        guard
            let deployment = try await store.update(
                name: current.name, spec: spec, actor: OrchestratorAPI.actor, kind: "scaled",
                change: "scaled from \(scaling.replicas) to \(replicas)",
                servers: servers.map(\.placement))
        else { throw Self.notFound(current.name) }
        return DeploymentView(deployment: deployment)
    }

    /// Update Model: new instances of another version of the deployment's model replace the old
    /// ones, by a rolling update or, as the strategy says, a canary or blue-green update
    /// (``RestartRoller``).
    func updateModel(_ name: String, to modelVersion: String) async throws -> DeploymentView {
        let current = try await existing(name)
        let staged = current.spec.stagedSteps != nil
        guard modelVersion != current.spec.modelVersion else {
            throw APIError(.conflict, code: "no_change", message: "deployment '\(current.name)' runs model version \(modelVersion) already")
        }
        var spec = current.spec
        spec.modelVersion = modelVersion
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
        return DeploymentView(deployment: deployment)
    }

    /// Back to what an earlier revision ran (`revision`; by default the newest earlier one that ran
    /// something else): its model version, environment, resources and settings, as a new revision.
    /// The replicas and autoscaling stay as they are now, as `kubectl rollout undo` keeps them.
    func rollback(_ name: String, to revision: Int?) async throws -> DeploymentView {
        let current = try await existing(name)
        // Whatever the strategy, a rollback is a rolling update; a canary or blue-green update under
        // way ends at once (its new instances go, the old ones take every request again).
        guard let revisions = try await store.revisions(of: current.name) else { throw Self.notFound(current.name) }
        func runnable(_ spec: DeploymentSpec) -> DeploymentSpec {
            var spec = spec
            spec.scaling = current.spec.scaling
            return spec
        }
        let target: DeploymentRevision
        if let number = revision {
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
        return DeploymentView(deployment: deployment)
    }

    /// `promote` (`{"full": true}` for the whole way), `pause` and `resume` of the canary or
    /// blue-green update under way; 409 `no_canary` without one.
    func canary(_ command: PostgresDeploymentStore.CanaryCommand, _ name: String) async throws -> DeploymentView {
        guard let deployment = try await store.command(command, name: name, actor: OrchestratorAPI.actor) else { throw Self.notFound(name) }
        logger.info("deployment canary", metadata: ["deployment": "\(name)", "command": "\(command.rawValue)"])
        return DeploymentView(deployment: deployment)
    }

    func setStopped(_ stopped: Bool, _ name: String) async throws -> DeploymentView {
        // A stop frees room that pending instances of other deployments may take; a start needs
        // the servers, a stop goes on without them.
        let servers = stopped ? try await answeringServers() : try await registry.servers().map(\.placement)
        guard let deployment = try await store.setStopped(name: name, stopped, actor: OrchestratorAPI.actor, servers: servers) else {
            throw Self.notFound(name)
        }
        return DeploymentView(deployment: deployment)
    }

    func delete(_ name: String, confirmed: Bool) async throws {
        guard confirmed else {
            throw APIError.invalid(field: "confirm", "deleting a deployment shuts its instances down and removes it: confirm=true is required")
        }
        guard try await store.delete(name: name, actor: OrchestratorAPI.actor, servers: try await answeringServers()) else {
            throw Self.notFound(name)
        }
        logger.info("deployment deleted", metadata: ["deployment": "\(name)"])
    }

    func events(_ name: String, limit: Int?) async throws -> Page<DeploymentEvent> {
        let limit = limit ?? 100
        guard (1...1_000).contains(limit) else { throw APIError.invalid(field: "limit", "must be 1 to 1000") }
        guard let events = try await store.events(of: name, limit: limit) else { throw Self.notFound(name) }
        return Page(items: events, nextCursor: nil)
    }

    func revisions(_ name: String) async throws -> Page<DeploymentRevision> {
        guard let revisions = try await store.revisions(of: name) else { throw Self.notFound(name) }
        return Page(items: revisions, nextCursor: nil)
    }

    struct LogsAnswer: Encodable, Sendable {
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
    func instanceLogs(_ name: String, instance id: String, tail: Int?) async throws -> LogsAnswer {
        let tail = tail ?? 200
        guard (1...1_000).contains(tail) else { throw APIError.invalid(field: "tail", "must be 1 to 1000") }
        let deployment = try await existing(name)
        guard let instance = deployment.instances.first(where: { $0.id == id }) else {
            throw APIError.notFound("deployment '\(deployment.name)' has no instance '\(id)'")
        }
        guard let server = instance.serverID else {
            throw APIError(
                .conflict, code: "instance_not_placed", message: "instance \(id) is pending (\(instance.reason ?? "no server")): it has no logs yet")
        }
        let lines = try await logs.lines(of: id, on: server, tail: tail)
        return LogsAnswer(instanceID: id, serverID: server, lines: lines)
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

    private func existing(_ name: String) async throws -> Deployment {
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
        self = try ContractCoding.recast(value, as: JSONValue.self)
    }

    /// An object's member, nil for anything else.
    func member(_ key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }
}

// MARK: - The contract's deployment operations

extension OrchestratorAPI {
    private func deploymentAPI() throws(APIError) -> DeploymentAPI {
        guard let deployments else { throw APIError.notFound("this orchestrator serves no deployments") }
        return deployments
    }

    func createDeployment(_ input: Operations.CreateDeployment.Input) async throws -> Operations.CreateDeployment.Output {
        let deployments = try deploymentAPI()
        let json =
            switch input.body {
            case .json(let body): body
            }
        let created = try await deployments.create(try JSONBody.recast(json, as: DeploymentAPI.NewDeployment.self))
        return .created(.init(body: .json(try answer(created))))
    }

    func listDeployments(_ input: Operations.ListDeployments.Input) async throws -> Operations.ListDeployments.Output {
        let page = try await deploymentAPI().list(limit: input.query.limit, cursor: input.query.cursor)
        return .ok(.init(body: .json(try answer(page))))
    }

    func getDeployment(_ input: Operations.GetDeployment.Input) async throws -> Operations.GetDeployment.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().get(input.path.deployment)))))
    }

    func deleteDeployment(_ input: Operations.DeleteDeployment.Input) async throws -> Operations.DeleteDeployment.Output {
        try await deploymentAPI().delete(input.path.deployment, confirmed: input.query.confirm)
        return .noContent(.init())
    }

    func scaleDeployment(_ input: Operations.ScaleDeployment.Input) async throws -> Operations.ScaleDeployment.Output {
        let deployments = try deploymentAPI()
        let body =
            switch input.body {
            case .json(let json): json
            }
        return .ok(.init(body: .json(try answer(try await deployments.scale(input.path.deployment, replicas: body.replicas)))))
    }

    func updateDeploymentModel(_ input: Operations.UpdateDeploymentModel.Input) async throws -> Operations.UpdateDeploymentModel.Output {
        let deployments = try deploymentAPI()
        let body =
            switch input.body {
            case .json(let json): json
            }
        return .ok(.init(body: .json(try answer(try await deployments.updateModel(input.path.deployment, to: body.modelVersion)))))
    }

    func rollbackDeployment(_ input: Operations.RollbackDeployment.Input) async throws -> Operations.RollbackDeployment.Output {
        let deployments = try deploymentAPI()
        let revision = input.body.flatMap { body in
            switch body {
            case .json(let rollback): rollback.revision
            }
        }
        return .ok(.init(body: .json(try answer(try await deployments.rollback(input.path.deployment, to: revision)))))
    }

    func promoteDeployment(_ input: Operations.PromoteDeployment.Input) async throws -> Operations.PromoteDeployment.Output {
        let deployments = try deploymentAPI()
        let full =
            input.body.flatMap { body in
                switch body {
                case .json(let promote): promote.full
                }
            } ?? false
        return .ok(.init(body: .json(try answer(try await deployments.canary(full ? .promoteFully : .promote, input.path.deployment)))))
    }

    func pauseDeployment(_ input: Operations.PauseDeployment.Input) async throws -> Operations.PauseDeployment.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().canary(.pause, input.path.deployment)))))
    }

    func resumeDeployment(_ input: Operations.ResumeDeployment.Input) async throws -> Operations.ResumeDeployment.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().canary(.resume, input.path.deployment)))))
    }

    func stopDeployment(_ input: Operations.StopDeployment.Input) async throws -> Operations.StopDeployment.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().setStopped(true, input.path.deployment)))))
    }

    func startDeployment(_ input: Operations.StartDeployment.Input) async throws -> Operations.StartDeployment.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().setStopped(false, input.path.deployment)))))
    }

    func listDeploymentEvents(_ input: Operations.ListDeploymentEvents.Input) async throws -> Operations.ListDeploymentEvents.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().events(input.path.deployment, limit: input.query.limit)))))
    }

    func listDeploymentRevisions(_ input: Operations.ListDeploymentRevisions.Input) async throws -> Operations.ListDeploymentRevisions.Output {
        .ok(.init(body: .json(try answer(try await deploymentAPI().revisions(input.path.deployment)))))
    }

    func getInstanceLogs(_ input: Operations.GetInstanceLogs.Input) async throws -> Operations.GetInstanceLogs.Output {
        let logs = try await deploymentAPI().instanceLogs(input.path.deployment, instance: input.path.instance, tail: input.query.tail)
        return .ok(.init(body: .json(try answer(logs))))
    }
}
