import ArgumentParser
import FleetContract
import Foundation
import OrchestratorContract

/// Follows an accepted operation until every device has settled, then reports it and decides the
/// exit status: 0 when all applied, 1 when any failed or timed out.
struct OperationWatcher {
    let context: CommandContext
    /// How often the operation is read.
    var interval = Duration.milliseconds(250)
    /// Failed reads in a row tolerated (an orchestrator restarting, a rolling update) before
    /// giving up: 40 × 250 ms is ten seconds.
    var toleratedFailures = 40

    /// What `follow` shows while waiting.
    enum Display {
        case many, single
    }

    /// Waits for the operation of `accepted` (unless `noWait`), then prints the summary, or the
    /// final JSON with `--output json` (with the devices the 202 said were skipped).
    func follow(_ accepted: AcceptedOperation, display: Display, noWait: Bool) async throws -> ExitCode {
        let id = accepted.operation.id
        if noWait {
            if context.output == .json {
                try context.printJSON(accepted)
            } else {
                context.console.print(
                    "Operation \(id) (\(accepted.operation.kind.rawValue)) accepted for "
                        + "\(OperationReport.count(accepted.operation.devices, "device")).\n"
                        + "Follow it with: fleetctl operation \(id) --watch")
            }
            return .success
        }
        let style: ProgressDisplay.Style =
            context.output == .json ? .silent : (display == .many ? .bar : .single)
        let final = try await watch(id, display: ProgressDisplay(style: style, console: context.console))
        try report(final, skipped: accepted.skipped, display: display)
        return Self.exitStatus(final.operation)
    }

    /// Reads the operation every `interval` until it is finished; returns its final state with
    /// all its devices.
    func watch(_ id: String, display: ProgressDisplay) async throws -> OperationDetail {
        var display = display
        let orchestrator = context.orchestrator
        let api = try orchestrator.orchestratorAPI
        let path = Operations.GetOperation.Input.Path(operationId: id)
        // While waiting, only the failed devices are asked for: the counts are what the bar
        // needs, and a list of every device of a large operation four times a second is not.
        let query = Operations.GetOperation.Input.Query(status: display.style.isSingle ? nil : .failed)
        var failures = 0
        while true {
            do {
                let detail = try await orchestrator.call { try await api.getOperation(path: path, query: query).ok.body.json }
                failures = 0
                if detail.operation.finished { break }
                display.update(detail)
            } catch let error as FleetctlError {
                guard case .unreachable = error, failures < toleratedFailures else { throw error }
                failures += 1
            }
            try await Task.sleep(for: interval)
        }
        let detail = try await orchestrator.call { try await api.getOperation(path: path).ok.body.json }
        display.finish(detail)
        return detail
    }

    /// Prints how the operation ended: its JSON with the skipped devices, one line, or the summary.
    private func report(_ final: OperationDetail, skipped: [SkippedDevice], display: Display) throws {
        if context.output == .json {
            var object: [String: JSONValue] = [:]
            if case .object(let members) = try ContractCoding.recast(final, as: JSONValue.self) { object = members }
            object["skipped"] = try ContractCoding.recast(skipped, as: JSONValue.self)
            context.console.printJSON(.object(object))
        } else if display == .single {
            context.console.print(OperationReport.singleLine(final))
        } else {
            context.console.print(OperationReport.summary(final, skipped: skipped))
        }
    }

    /// 1 when any device failed or timed out, else 0.
    static func exitStatus(_ operation: OperationSummary) -> ExitCode {
        operation.failed + operation.timedOut > 0 ? ExitStatus.devicesFailed : .success
    }
}

extension ProgressDisplay.Style {
    var isSingle: Bool {
        if case .single = self { return true }
        return false
    }
}
