import ArgumentParser
import FleetContract
import Foundation

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
    /// final JSON with `--output json`. `acceptedJSON` is the 202 body, for its `skipped` list.
    func follow(_ accepted: AcceptedOperation, acceptedJSON: JSONValue, display: Display, noWait: Bool) async throws -> ExitCode {
        let id = accepted.operation.id
        if noWait {
            if context.output == .json {
                context.console.printJSON(acceptedJSON)
            } else {
                context.console.print(
                    "Operation \(id.uuidString.lowercased()) (\(accepted.operation.kind)) accepted for "
                        + "\(OperationReport.count(accepted.operation.devices, "device")).\n"
                        + "Follow it with: fleetctl operation \(id.uuidString.lowercased()) --watch")
            }
            return .success
        }
        let style: ProgressDisplay.Style =
            context.output == .json ? .silent : (display == .many ? .bar : .single)
        let final = try await watch(id, display: ProgressDisplay(style: style, console: context.console))
        try report(final, skipped: accepted.skipped, skippedJSON: Self.member("skipped", of: acceptedJSON), display: display)
        return Self.exitStatus(final.detail.operation)
    }

    /// Reads the operation every `interval` until it is finished; returns its final state with
    /// all its devices.
    func watch(_ id: UUID, display: ProgressDisplay) async throws -> (detail: OperationDetail, json: JSONValue) {
        var display = display
        let path = "/v1/operations/\(id.uuidString.lowercased())"
        // While waiting, only the failed devices are asked for: the counts are what the bar
        // needs, and a list of every device of a large operation four times a second is not.
        let query: [(String, String)] = display.style.isSingle ? [] : [("status", "failed")]
        var failures = 0
        while true {
            do {
                let detail = try await context.orchestrator.get(path, query: query, as: OperationDetail.self)
                failures = 0
                if detail.operation.finished { break }
                display.update(detail)
            } catch let error as FleetctlError {
                guard case .unreachable = error, failures < toleratedFailures else { throw error }
                failures += 1
            }
            try await Task.sleep(for: interval)
        }
        let answer = try await context.orchestrator.send(.GET, path)
        let detail = try answer.decode(OperationDetail.self, from: context.orchestrator.name)
        display.finish(detail)
        return (detail, try answer.decode(JSONValue.self, from: context.orchestrator.name))
    }

    private func report(
        _ final: (detail: OperationDetail, json: JSONValue), skipped: [SkippedDevice], skippedJSON: JSONValue?, display: Display
    ) throws {
        if context.output == .json {
            var object: [String: JSONValue] = [:]
            if case .object(let members) = final.json { object = members }
            if let skippedJSON { object["skipped"] = skippedJSON }
            context.console.printJSON(.object(object))
        } else if display == .single {
            context.console.print(OperationReport.singleLine(final.detail))
        } else {
            context.console.print(OperationReport.summary(final.detail, skipped: skipped))
        }
    }

    /// 1 when any device failed or timed out, else 0.
    static func exitStatus(_ operation: OperationSummary) -> ExitCode {
        operation.failed + operation.timedOut > 0 ? ExitStatus.devicesFailed : .success
    }

    static func member(_ name: String, of value: JSONValue) -> JSONValue? {
        guard case .object(let members) = value else { return nil }
        return members[name]
    }
}

extension ProgressDisplay.Style {
    var isSingle: Bool {
        if case .single = self { return true }
        return false
    }
}
