import ArgumentParser
import FleetContract
import Foundation

/// `--wait` of the deployment commands that start instances: a live view of the deployment until
/// every placed instance answers its health check (pending ones, waiting for room, are not
/// waited for), or until the timeout.
struct DeploymentWaitOptions: ParsableArguments {
    @Flag(help: "Follow the instances until every placed one is ready (a live view on stderr).")
    var wait = false

    @Option(help: "With --wait: give up after this many seconds (exit status 1).")
    var waitTimeout: Int = 120

    func validate() throws {
        guard (1...86_400).contains(waitTimeout) else { throw ValidationError("--wait-timeout must be 1 to 86400 seconds") }
    }
}

enum DeploymentWatcher {
    /// One line of the live view: how many instances stand where.
    static func line(_ deployment: DeploymentSummary) -> String {
        let states = Dictionary(grouping: deployment.instances, by: \.state).mapValues(\.count)
        let placed = deployment.replicas.desired - deployment.replicas.pending
        var parts = ["\(deployment.name): \(deployment.replicas.ready)/\(placed) placed instance(s) ready"]
        for state in ["assigned", "starting", "failed", "pending"] where states[state, default: 0] > 0 {
            parts.append("\(states[state]!) \(state)")
        }
        let behind = deployment.instances.count { ($0.runsRevision ?? deployment.revision) < deployment.revision }
        if behind > 0 { parts.append("\(behind) to replace by revision \(deployment.revision)") }
        return parts.joined(separator: ", ")
    }

    /// Every placed instance ready, on the deployment's revision (an edit's restart done).
    static func settled(_ deployment: DeploymentSummary) -> Bool {
        deployment.instances.allSatisfy {
            ($0.state == "ready" || $0.state == "pending") && ($0.runsRevision ?? deployment.revision) >= deployment.revision
        }
    }

    /// Follows `name` until it settles; prints the deployment then. `.success`, or exit status 1
    /// after the timeout with the instances that are not ready and why.
    static func follow(_ name: String, _ context: CommandContext, timeout: Duration) async throws -> ExitCode {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while true {
            let json = try await DeploymentsCommand.call(context) { try await $0.getDeployment(path: .init(deployment: name)).ok.body.json }
            let deployment = try DeploymentSummary(json, from: context.orchestrator)
            let line = line(deployment)
            if line != last {
                context.console.error(line)
                last = line
            }
            if settled(deployment) {
                _ = try DeploymentsCommand.print(json, context)
                return .success
            }
            if ContinuousClock.now >= deadline {
                _ = try DeploymentsCommand.print(json, context)
                let waiting = deployment.instances.filter {
                    ($0.state != "ready" && $0.state != "pending") || ($0.runsRevision ?? deployment.revision) < deployment.revision
                }
                context.console.error(
                    "not every instance is ready after \(timeout.components.seconds) s: "
                        + waiting.map { "\($0.id) \($0.state)\($0.reason.map { " (\($0))" } ?? "")" }.joined(separator: "; "))
                return ExitStatus.devicesFailed
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}
