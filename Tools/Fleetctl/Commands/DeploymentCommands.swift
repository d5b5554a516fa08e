import ArgumentParser
import AutoscalerContract
import FleetContract
import Foundation
import LoadBalancerContract
import MetricsAggregatorContract
import OrchestratorContract
import Yams

/// `fleetctl deployments …`: the orchestrator's deployments, from a file or flags.
struct DeploymentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deployments", abstract: "Deploy model versions on the fleet's servers and manage them.",
        subcommands: [
            ListDeployments.self, CreateDeployment.self, EditDeployment.self, ScaleDeployment.self, UpdateDeployment.self,
            RollbackDeployment.self, PromoteDeployment.self, PauseDeployment.self, ResumeDeployment.self, StopDeployment.self, StartDeployment.self,
            DeleteDeployment.self, DeploymentEvents.self,
            DeploymentRevisions.self, InstanceLogs.self,
            DeploymentMetricsCommand.self, DeploymentTopCommand.self, DeploymentAutoscalingCommand.self, DeploymentEndpointCommand.self,
        ],
        defaultSubcommand: ListDeployments.self)

    /// `/v1/deployments/<name>`, the name percent-encoded.
    static func path(_ name: String) -> String {
        "/v1/deployments/\(ServiceClient.segment(name))"
    }

    static func render(_ deployments: [DeploymentSummary]) -> String {
        var table = TextTable("name", "status", "model version", "ready", "pending", "wanted", "environment", "revision")
        for deployment in deployments {
            table.add(
                deployment.name, deployment.status, deployment.modelVersion, "\(deployment.replicas.ready)", "\(deployment.replicas.pending)",
                "\(deployment.replicas.desired)", deployment.environment, "\(deployment.revision)")
        }
        return table.render() + "\n\(OperationReport.count(deployments.count, "deployment"))"
    }

    static func render(_ deployment: DeploymentSummary) -> String {
        let resources = deployment.resources
        let gpus = resources.gpuCount > 0 ? ", \(resources.gpuCount) × \(resources.gpuType ?? "?") GPU" : ""
        var lines = [
            "Deployment \(deployment.name): \(deployment.status), revision \(deployment.revision)",
            "model \(deployment.modelID.uuidString.lowercased()) version \(deployment.modelVersion), \(deployment.environment)",
            "each instance: \(Format.number(resources.cpuCores)) CPU, \(Format.number(resources.memoryGB)) GB\(gpus)",
            "instances: \(deployment.replicas.ready) ready of \(deployment.replicas.desired) wanted (\(deployment.scaling.minReplicas) to "
                + "\(deployment.scaling.maxReplicas)), \(deployment.replicas.pending) pending",
        ]
        lines.append(
            deployment.endpoint.map { "endpoint: \($0) on the load balancer (GET /v1/endpoints there gives its URL)" }
                ?? "endpoint: none (its load balancer is off)")
        if let rollout = deployment.rollout {
            let versions = rollout.versions.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            let deadline = rollout.progressDeadlineAt.map { ", rolled back if none is ready by \(Format.date($0))" } ?? ""
            lines.append(
                "rollout: revision \(rollout.fromRevision) to \(rollout.toRevision), \(rollout.moved) of \(rollout.instances) instance(s) moved "
                    + "(\(versions))\(deadline)")
            if let stage = rollout.stage {
                let state =
                    stage.paused ? "paused" : stage.stepEndsAt.map { "next step after \(Format.date($0))" } ?? "next step once ready or promoted"
                lines.append(
                    "\(stage.strategy): step \(stage.step) of \(stage.steps), \(stage.weight) % of the requests on the new version, \(state)"
                        + (stage.analysis.map { "; analysis: \($0)" } ?? ""))
            }
        }
        if let because = deployment.rolledBackBecause { lines.append("rolled back by the orchestrator: \(because)") }
        if !deployment.description.isEmpty { lines.insert(deployment.description, at: 1) }
        var table = TextTable("instance", "server", "state", "address", "version", "reason")
        for instance in deployment.instances {
            table.add(instance.id, instance.serverID ?? "-", instance.state, instance.address ?? "-", instance.modelVersion, instance.reason ?? "")
        }
        return lines.joined(separator: "\n") + (deployment.instances.isEmpty ? "\n\nNo instances." : "\n\n" + table.render())
    }

    /// Prints a deployment the orchestrator answered, then, with `--wait`, follows it until its
    /// instances are ready.
    static func print(_ answer: JSONValue, _ context: CommandContext, waiting: DeploymentWaitOptions) async throws -> ExitCode {
        let printed = try print(answer, context)
        guard waiting.wait, printed == .success else { return printed }
        let name = try DeploymentSummary(answer, from: context.orchestrator).name
        return try await DeploymentWatcher.follow(name, context, timeout: .seconds(waiting.waitTimeout))
    }

    /// Prints a deployment the orchestrator answered (its JSON: the contract keeps a deployment's
    /// nulls, decision 92): as it wrote it, or as a person reads it.
    static func print(_ answer: JSONValue, _ context: CommandContext, note: String? = nil) throws -> ExitCode {
        if context.output == .json {
            context.console.printJSON(answer)
        } else {
            context.console.print(render(try DeploymentSummary(answer, from: context.orchestrator)) + (note.map { "\n\n" + $0 } ?? ""))
        }
        return .success
    }

    /// Runs one call of the orchestrator's generated client.
    static func call<Value>(_ context: CommandContext, _ body: (OrchestratorContract.Client) async throws -> Value) async throws -> Value {
        let orchestrator = context.orchestrator
        let api = try orchestrator.orchestratorAPI
        return try await orchestrator.call { try await body(api) }
    }
}

/// `fleetctl deployments [list] [NAME]`.
struct ListDeployments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the deployments, or show one with its instances.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "A deployment's name: show it and its instances.")
    var name: String?

    @OptionGroup var waiting: DeploymentWaitOptions

    func run() async throws {
        try await global.run { context in
            if let name, waiting.wait {
                return try await DeploymentWatcher.follow(name, context, timeout: .seconds(waiting.waitTimeout))
            }
            if let name {
                let deployment = try await DeploymentsCommand.call(context) { try await $0.getDeployment(path: .init(deployment: name)).ok.body.json }
                return try DeploymentsCommand.print(deployment, context)
            }
            let orchestrator = context.orchestrator
            let api = try orchestrator.orchestratorAPI
            let deployments = try await orchestrator.allPages("/v1/deployments") { cursor in
                let page = try await api.listDeployments(query: .init(limit: 200, cursor: cursor)).ok.body.json
                return (page.items, page.nextCursor)
            }
            if context.output == .json {
                context.console.printJSON(.array(deployments))
            } else {
                context.console.print(DeploymentsCommand.render(try deployments.map { try DeploymentSummary($0, from: orchestrator) }))
            }
            return .success
        }
    }
}

/// A deployment file: JSON, or YAML (`.yaml`, `.yml`), `-` for standard input.
enum DeploymentFile {
    static func read(_ path: String) throws -> JSONValue {
        guard path.hasSuffix(".yaml") || path.hasSuffix(".yml") else { return try JSONFile.read(path) }
        guard FileManager.default.fileExists(atPath: path), let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw FleetctlError.invalidInput("no readable file \(path)")
        }
        do {
            guard let value = try Yams.load(yaml: text) else { throw FleetctlError.invalidInput("\(path) is empty") }
            let data = try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let error as FleetctlError {
            throw error
        } catch {
            throw FleetctlError.invalidInput("\(path) is not YAML a deployment can be read from: \(error)")
        }
    }
}

/// `fleetctl deployments create (--file F | --name N --model ID --version V …)`.
struct CreateDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Deploy a model version: from a JSON or YAML file, flags, or both (flags win).",
        discussion: "Every field and its default: docs/orchestrator.md and docs/examples/deployment.yaml.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "A deployment file (JSON, or YAML when it ends in .yaml or .yml); - reads JSON from stdin.")
    var file: String?

    @Option(help: "The deployment's name: a DNS label, never editable.")
    var name: String?

    @Option(help: "The model's id.")
    var model: IDArgument?

    @Option(help: "The model version to serve.")
    var version: String?

    @Option(help: "Instances wanted (also the minimum and maximum unless the file says otherwise).")
    var replicas: Int?

    @Option(help: "CPU cores per instance.")
    var cpu: Double?

    @Option(help: "Memory per instance, in GB.")
    var memory: Double?

    @Option(help: "GPUs per instance, as COUNTxTYPE (1xnvidia-t4).")
    var gpu: String?

    @OptionGroup var waiting: DeploymentWaitOptions

    func run() async throws {
        try await global.run { context in
            var body: [String: JSONValue] = [:]
            if let file {
                guard case .object(let fields) = try DeploymentFile.read(file) else {
                    throw FleetctlError.invalidInput("\(file) must hold one object: a deployment")
                }
                body = fields
            }
            if let name { body["name"] = .string(name) }
            if let model { body["model_id"] = .string(model.text) }
            if let version { body["model_version"] = .string(version) }
            var resources = body["resources"]?.objectMembers ?? [:]
            if let cpu { resources["cpu_cores"] = .number(cpu) }
            if let memory { resources["memory_gb"] = .number(memory) }
            if let gpu {
                let parts = gpu.split(separator: "x", maxSplits: 1)
                guard parts.count == 2, let count = Int(parts[0]) else { throw FleetctlError.invalidInput("--gpu is COUNTxTYPE, e.g. 1xnvidia-t4") }
                resources["gpu_count"] = .number(Double(count))
                resources["gpu_type"] = .string(String(parts[1]))
            }
            if !resources.isEmpty { body["resources"] = .object(resources) }
            if let replicas {
                var scaling = body["scaling"]?.objectMembers ?? [:]
                scaling["replicas"] = .number(Double(replicas))
                if scaling["min_replicas"] == nil { scaling["min_replicas"] = .number(Double(replicas)) }
                if scaling["max_replicas"] == nil { scaling["max_replicas"] = .number(Double(replicas)) }
                body["scaling"] = .object(scaling)
            }
            for field in ["name", "model_id", "model_version"] where body[field] == nil {
                throw FleetctlError.invalidInput("a deployment needs \(field): give it in --file or with its flag")
            }
            let new: OrchestratorSchema.NewDeployment = try contractValue(.object(body), what: "the deployment")
            let answer = try await DeploymentsCommand.call(context) { try await $0.createDeployment(body: .json(new)).created.body.json }
            return try await DeploymentsCommand.print(answer, context, waiting: waiting)
        }
    }
}

/// `fleetctl deployments edit NAME (--file PATCH | --description TEXT)`.
struct EditDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit", abstract: "Change a deployment (a new revision): the fields of a file merged into it, or a new description.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Option(help: "The fields to change (JSON or YAML), merged into the deployment.")
    var file: String?

    @Option(help: "A new description.")
    var description: String?

    @OptionGroup var waiting: DeploymentWaitOptions

    func run() async throws {
        try await global.run { context in
            var patch: [String: JSONValue] = [:]
            if let file {
                guard case .object(let fields) = try DeploymentFile.read(file) else {
                    throw FleetctlError.invalidInput("\(file) must hold one object: the fields to change")
                }
                patch = fields
            }
            if let description { patch["description"] = .string(description) }
            guard !patch.isEmpty else { throw FleetctlError.invalidInput("give --file and/or --description") }
            let answer = try await context.orchestrator.send(.PATCH, DeploymentsCommand.path(name), body: .object(patch))
            if context.output == .json {
                context.console.printJSON(try answer.decode(JSONValue.self, from: context.orchestrator.name))
                return .success
            }
            let edit = try answer.decode(DeploymentEditAnswer.self, from: context.orchestrator.name)
            let note =
                edit.restart ? "\n\nThe instances restart to take the change: new ones replace them, a rolling update (--wait follows it)." : ""
            context.console.print(DeploymentsCommand.render(edit.deployment) + note)
            guard waiting.wait else { return .success }
            return try await DeploymentWatcher.follow(name, context, timeout: .seconds(waiting.waitTimeout))
        }
    }
}

/// `fleetctl deployments scale NAME --replicas N`.
struct ScaleDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale", abstract: "Set the instances wanted, within the deployment's minimum and maximum.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Option(help: "Instances wanted.")
    var replicas: Int

    @OptionGroup var waiting: DeploymentWaitOptions

    func run() async throws {
        try await global.run { context in
            let answer = try await DeploymentsCommand.call(context) {
                try await $0.scaleDeployment(path: .init(deployment: name), body: .json(.init(replicas: replicas))).ok.body.json
            }
            return try await DeploymentsCommand.print(answer, context, waiting: waiting)
        }
    }
}

/// `fleetctl deployments update NAME --model-version V [--wait]`.
struct UpdateDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Update Model: replace the instances by ones of another version of the model, a rolling update.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Option(help: "A version of the deployment's model, active in the registry.")
    var modelVersion: String

    @OptionGroup var waiting: DeploymentWaitOptions

    func validate() throws {
        guard !modelVersion.isEmpty, modelVersion.count <= 64 else { throw ValidationError("--model-version must be 1 to 64 characters") }
    }

    func run() async throws {
        try await global.run { context in
            let answer = try await DeploymentsCommand.call(context) {
                try await $0.updateDeploymentModel(path: .init(deployment: name), body: .json(.init(modelVersion: modelVersion))).ok.body.json
            }
            return try await DeploymentsCommand.print(answer, context, waiting: waiting)
        }
    }
}

/// `fleetctl deployments rollback NAME [--to-revision N] [--wait]`.
struct RollbackDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Go back to what an earlier revision ran (by default the newest that ran something else); replicas stay as they are.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Option(help: "The revision to go back to (see `fleetctl deployments revisions NAME`).")
    var toRevision: Int?

    @OptionGroup var waiting: DeploymentWaitOptions

    func validate() throws {
        if let toRevision, toRevision < 1 { throw ValidationError("--to-revision must be 1 or more") }
    }

    func run() async throws {
        try await global.run { context in
            let answer = try await DeploymentsCommand.call(context) {
                try await $0.rollbackDeployment(path: .init(deployment: name), body: .json(.init(revision: toRevision))).ok.body.json
            }
            return try await DeploymentsCommand.print(answer, context, waiting: waiting)
        }
    }
}

/// `fleetctl deployments promote NAME [--full]`.
struct PromoteDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote", abstract: "End the canary's step now (with --full: move every instance to the new version at once).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Flag(help: "Skip the remaining steps.")
    var full = false

    @OptionGroup var waiting: DeploymentWaitOptions

    func run() async throws {
        try await global.run { context in
            let answer = try await DeploymentsCommand.call(context) {
                try await $0.promoteDeployment(path: .init(deployment: name), body: .json(.init(full: full ? true : nil))).ok.body.json
            }
            return try await DeploymentsCommand.print(answer, context, waiting: waiting)
        }
    }
}

/// `fleetctl deployments pause NAME`.
struct PauseDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Hold the canary at its step (the analysis goes on).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    func run() async throws {
        try await global.run { context in
            try DeploymentsCommand.print(
                try await DeploymentsCommand.call(context) { try await $0.pauseDeployment(path: .init(deployment: name)).ok.body.json }, context)
        }
    }
}

/// `fleetctl deployments resume NAME`.
struct ResumeDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Go on with a paused canary; its step's time starts again.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    func run() async throws {
        try await global.run { context in
            try DeploymentsCommand.print(
                try await DeploymentsCommand.call(context) { try await $0.resumeDeployment(path: .init(deployment: name)).ok.body.json }, context)
        }
    }
}

/// `fleetctl deployments stop NAME`.
struct StopDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Shut every instance down; the configuration stays.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    func run() async throws {
        try await global.run { context in
            try DeploymentsCommand.print(
                try await DeploymentsCommand.call(context) { try await $0.stopDeployment(path: .init(deployment: name)).ok.body.json }, context)
        }
    }
}

/// `fleetctl deployments start NAME`.
struct StartDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a stopped deployment again with its configuration.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @OptionGroup var waiting: DeploymentWaitOptions

    func run() async throws {
        try await global.run { context in
            try await DeploymentsCommand.print(
                try await DeploymentsCommand.call(context) { try await $0.startDeployment(path: .init(deployment: name)).ok.body.json }, context,
                waiting: waiting)
        }
    }
}

/// `fleetctl deployments delete NAME [--yes]`.
struct DeleteDeployment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a deployment: its instances shut down, its configuration removed.",
        discussion: "Without --yes you are asked to confirm; with no terminal to ask, nothing is deleted (exit 3).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @OptionGroup var options: DeletionOptions

    func run() async throws {
        try await global.run { context in
            // Read first: a wrong name fails before the question.
            _ = try await DeploymentsCommand.call(context) { try await $0.getDeployment(path: .init(deployment: name)).ok }
            return try await context.delete(what: "deployment \(name)", identity: ["name": .string(name)], options: options) {
                _ = try await DeploymentsCommand.call(context) {
                    try await $0.deleteDeployment(path: .init(deployment: name), query: .init(confirm: true)).noContent
                }
            }
        }
    }
}

/// `fleetctl deployments events NAME`.
struct DeploymentEvents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "What happened to a deployment, newest first.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Option(help: "How many events at most (1 to 1000).")
    var limit = 50

    func run() async throws {
        try await global.run { context in
            let page = try await DeploymentsCommand.call(context) {
                try await $0.listDeploymentEvents(path: .init(deployment: name), query: .init(limit: limit)).ok.body.json
            }
            return try context.report(page) { page in
                var table = TextTable("when", "kind", "by", "what")
                for event in page.items { table.add(Format.date(event.at), event.kind, event.actor, event.message) }
                return table.render()
            }
        }
    }
}

/// `fleetctl deployments revisions NAME`.
struct DeploymentRevisions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revisions", abstract: "Every revision of a deployment, newest first.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    func run() async throws {
        try await global.run { context in
            let page = try await DeploymentsCommand.call(context) {
                try await $0.listDeploymentRevisions(path: .init(deployment: name)).ok.body.json
            }
            let revisions = try page.items.map { try contractAnswer($0, as: DeploymentRevisionView.self, from: context.orchestrator) }
            return try context.report(page) { _ in
                var table = TextTable("revision", "when", "by", "change")
                for revision in revisions { table.add("\(revision.revision)", Format.date(revision.createdAt), revision.actor, revision.change) }
                return table.render()
            }
        }
    }
}

extension JSONValue {
    /// An object's members; nil for anything else.
    fileprivate var objectMembers: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }
}

/// `fleetctl deployments logs NAME INSTANCE [--tail N]`.
struct InstanceLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "The last lines of an instance's output, from its agent.",
        discussion: "The instance ids are in `fleetctl deployments list NAME`.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Argument(help: "The instance's id.")
    var instance: String

    @Option(help: "How many of the last lines (1 to 1000).")
    var tail = 200

    func run() async throws {
        try await global.run { context in
            let logs = try await DeploymentsCommand.call(context) {
                try await $0.getInstanceLogs(path: .init(deployment: name, instance: instance), query: .init(tail: tail)).ok.body.json
            }
            return try context.report(logs) { $0.lines.joined(separator: "\n") }
        }
    }
}

struct DeploymentMetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "A deployment's live figures: request rate, errors, latency, resource use.",
        discussion: """
            From the metrics-aggregator (--metrics): the window before the current second, overall, \
            per model version and per instance. A dash is a figure with nothing to compute it from \
            (no requests, nothing reporting memory); a stale instance has not reported for 3 s.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    @Option(help: "The window: 10s, 1m or 5m (1 s to 5 min).")
    var window = "1m"

    typealias Answer = MetricsAggregatorContract.Components.Schemas.DeploymentMetrics

    func run() async throws {
        try await global.run { context in
            let service = context.metrics
            let answer = try await service.call {
                try await service.metricsAPI.getDeploymentMetrics(path: .init(deployment: name), query: .init(window: window)).ok.body.json
            }
            try context.printObject(answer, render: Self.render)
            return .success
        }
    }

    static func render(_ answer: Answer) -> String {
        let snapshot = answer
        var table = TextTable("of", "req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "cpu", "memory", "state", numeric: [1, 2, 3, 4, 5, 6, 7])
        func cells(_ figures: MetricsFigures?) -> [String] {
            guard let figures else { return Array(repeating: "-", count: 7) }
            let percent = { (value: Double?) in value.map { String(format: "%.1f%%", 100 * $0) } ?? "-" }
            let milliseconds = { (value: Double?) in value.map { String(format: "%.1f", $0) } ?? "-" }
            return [
                String(format: "%.1f", figures.requestsPerSecond), percent(figures.errorRatio), milliseconds(figures.latencyMs?.p50),
                milliseconds(figures.latencyMs?.p95), milliseconds(figures.latencyMs?.p99), percent(figures.cpuUtilization),
                percent(figures.memoryUtilization),
            ]
        }
        table.add(["all"] + cells(snapshot.figures) + ["\(snapshot.readyInstances)/\(snapshot.instances) ready"])
        for version in snapshot.versions {
            table.add(["version \(version.version)"] + cells(version.figures) + ["\(version.readyInstances)/\(version.instances) ready"])
        }
        for instance in answer.instanceFigures {
            let state = instance.stale ? String(format: "stale, %.0f s", instance.ageSeconds) : instance.ready ? "ready" : "not ready"
            table.add(["\(instance.instanceId) (\(instance.server))"] + cells(instance.figures) + [state])
        }
        let heading = String(
            format: "%@: last %d s; newest data %.1f s old", snapshot.deployment, snapshot.figures.windowSeconds, snapshot.newestDataAgeSeconds)
        return heading + "\n" + table.render()
    }
}

struct DeploymentAutoscalingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscaling", abstract: "A deployment's autoscaling: its targets, the latest recommendation and why, the decisions.",
        discussion: """
            From the autoscaler (--autoscaler). Only the replica that decides for the deployment has a \
            latest recommendation; decisions are newest first.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    typealias Answer = AutoscalerContract.Components.Schemas.Autoscaling

    func run() async throws {
        try await global.run { context in
            let service = context.autoscaler
            let answer = try await service.call {
                try await service.autoscalerAPI.getDeploymentAutoscaling(path: .init(deployment: name)).ok.body.json
            }
            try context.printObject(answer, render: Self.render)
            return .success
        }
    }

    static func render(_ answer: Answer) -> String {
        let targets = answer.targets.additionalProperties.sorted { $0.key < $1.key }.map { metric, value in
            metric == "requests_per_second" || metric == "in_flight_requests" ? "\(metric) \(value)" : "\(metric) \(Int((value * 100).rounded())) %"
        }
        var lines = [
            "\(answer.deployment): autoscaling \(answer.enabled ? "on" : "off"), \(answer.replicas) replicas "
                + "(\(answer.minReplicas) to \(answer.maxReplicas)), scale-down window \(answer.scaleDownStabilizationSeconds) s",
            "targets: " + (targets.isEmpty ? "none" : targets.joined(separator: ", ")),
        ]
        if let latest = answer.latest {
            lines.append(
                "latest (\(ContractCoding.timestamp(latest.at))): \(latest.desired) replicas, recommended \(latest.recommendation): \(latest.reason)")
        } else {
            lines.append("latest: none yet (decided by \(answer.owner))")
        }
        var table = TextTable("at", "from", "to", "revision", "reason", numeric: [1, 2, 3])
        for decision in answer.decisions {
            table.add([ContractCoding.timestamp(decision.at), "\(decision.from)", "\(decision.to)", "\(decision.revision)", decision.reason])
        }
        return lines.joined(separator: "\n") + (answer.decisions.isEmpty ? "\nno decisions yet" : "\n" + table.render())
    }
}

struct DeploymentEndpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint", abstract: "A deployment's endpoint on the load balancer: its URL, servers, weights and health.",
        discussion: """
            From the load balancer (--load-balancer), as HAProxy sees it: each server's health (UP, \
            DOWN, MAINT, DRAIN) and the requests it served since HAProxy started.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The deployment's name.")
    var name: String

    typealias Answer = LoadBalancerContract.Components.Schemas.Endpoint

    func run() async throws {
        try await global.run { context in
            let service = context.loadBalancer
            let answer = try await service.call { try await service.loadBalancerAPI.getEndpoint(path: .init(deployment: name)).ok.body.json }
            try context.printObject(answer, render: Self.render)
            return .success
        }
    }

    static func render(_ answer: Answer) -> String {
        let heading =
            "\(answer.deployment): \(answer.url) (\(answer.state.rawValue)), \(answer.algorithm.rawValue)"
            + "\(answer.stickySessions ? ", sticky sessions" : ""), health check \(answer.healthCheckPath); "
            + "\(answer.requestsTotal) requests, \(answer.activeConnections) connection(s) now"
        var table = TextTable("instance", "address", "version", "weight", "health", "requests", numeric: [3, 5])
        for server in answer.servers {
            table.add([server.instanceId, server.address, server.version, "\(server.weight)", server.health, "\(server.requestsTotal)"])
        }
        return heading + "\n" + (answer.servers.isEmpty ? "no servers" : table.render())
    }
}

struct DeploymentTopCommand: AsyncParsableCommand {
    typealias Order = MetricsAggregatorContract.Operations.GetTopDeployments.Input.Query.ByPayload

    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "The fleet's deployments ranked by request rate, error ratio or p99 latency.",
        discussion: """
            From the metrics-aggregator (--metrics), highest first; deployments without the figure \
            (no requests in the window) come last.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "What to rank by: \(Order.allCases.map(\.rawValue).joined(separator: ", ")).")
    var by = "rate"

    @Option(help: "The window: 10s, 1m or 5m (1 s to 5 min).")
    var window = "1m"

    @Option(help: "How many deployments, 1 to 100.")
    var limit = 10

    func validate() throws {
        guard Order(rawValue: by) != nil else {
            throw ValidationError("--by: '\(by)' is not one of \(Order.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...100).contains(limit) else { throw ValidationError("--limit: \(limit) is not from 1 to 100") }
    }

    func run() async throws {
        try await global.run { context in
            let service = context.metrics
            let answer = try await service.call {
                try await service.metricsAPI.getTopDeployments(query: .init(by: Order(rawValue: by), window: window, limit: limit)).ok.body.json
            }
            try context.printObject(answer, render: Self.render)
            return .success
        }
    }

    static func render(_ answer: MetricsAggregatorContract.Components.Schemas.Top) -> String {
        var table = TextTable("deployment", "req/s", "errors", "p99 ms", "cpu", numeric: [1, 2, 3, 4])
        for entry in answer.items {
            let figures = entry.figures
            table.add([
                entry.deployment, String(format: "%.1f", figures.requestsPerSecond),
                figures.errorRatio.map { String(format: "%.1f%%", 100 * $0) } ?? "-",
                figures.latencyMs.map { String(format: "%.1f", $0.p99) } ?? "-",
                figures.cpuUtilization.map { String(format: "%.1f%%", 100 * $0) } ?? "-",
            ])
        }
        let heading = "by \(answer.by), last \(answer.windowSeconds) s"
        return heading + "\n" + (answer.items.isEmpty ? "no deployment has figures" : table.render())
    }
}
