import ArgumentParser
import FleetContract
import NIOHTTP1

/// An operation on many devices the way an operator runs one: the orchestrator's preview
/// (`dry_run`), a question, then the operation with `confirm`, followed until it settles. With
/// `--yes` the preview and the question are skipped; with `--dry-run` only the preview is made.
struct BulkOperation {
    let context: CommandContext
    /// `/v1/assignments`, `/v1/settings`, `/v1/operations/{id}/revert` or `…/retry`.
    let path: String
    /// The request's own fields (targets, pipelines, …); the options are added here.
    let fields: [String: JSONValue]
    let options: BulkOptions

    func run() async throws -> ExitCode {
        var previewed: Int?
        if options.dryRun || !options.yes {
            let answer = try await send(["dry_run": .bool(true)])
            let preview = try answer.decode(OperationPreview.self, from: context.orchestrator.name)
            if options.dryRun {
                if context.output == .json {
                    context.console.printJSON(try answer.decode(JSONValue.self, from: context.orchestrator.name))
                } else {
                    context.console.print(OperationReport.preview(preview))
                }
                return .success
            }
            // The preview is for the person deciding; with --output json stdout keeps only the result.
            let text = OperationReport.preview(preview)
            if context.output == .json {
                context.console.error(text)
            } else {
                context.console.print(text + "\n")
            }
            guard !preview.changes.isEmpty else {
                return NoChange.report("no device would change (\(preview.skipped.count) skipped)", context: context)
            }
            let devices = OperationReport.count(preview.changes.count, "device")
            guard context.console.stdinIsTerminal else {
                context.console.error("error: not applied: \(devices) would change and there is no terminal to ask; pass --yes to apply")
                return ExitStatus.notConfirmed
            }
            guard context.console.confirm("Apply to \(devices)?") else {
                context.console.error("Not applied.")
                return ExitStatus.notConfirmed
            }
            previewed = preview.changes.count
        }
        let answer: ServiceClient.Answer
        do {
            answer = try await send(["confirm": .bool(true)])
        } catch FleetctlError.api(_, _, "no_change", let message, _) {
            return NoChange.report(message, context: context)
        }
        let accepted = try answer.decode(AcceptedOperation.self, from: context.orchestrator.name)
        if let previewed, previewed != accepted.operation.devices {
            // The orchestrator plans again on confirm: devices that came or went since the preview change the set.
            context.console.error(
                "note: the operation takes \(OperationReport.count(accepted.operation.devices, "device")); the preview showed \(previewed) "
                    + "(the selection changed in between)")
        }
        return try await OperationWatcher(context: context).follow(
            accepted, acceptedJSON: try answer.decode(JSONValue.self, from: context.orchestrator.name), display: .many, noWait: options.noWait)
    }

    private func send(_ extra: [String: JSONValue]) async throws -> ServiceClient.Answer {
        let body = fields.merging(options.fields) { $1 }.merging(extra) { $1 }
        return try await context.orchestrator.send(.POST, path, body: .object(body))
    }
}

/// An operation on one device: sent at once (the operator named the device, no confirmation is
/// needed), then followed with a one-line display.
struct SingleDeviceOperation {
    let context: CommandContext
    let method: HTTPMethod
    let path: String
    var query: [(String, String)] = []
    let body: JSONValue?
    let noWait: Bool

    func run() async throws -> ExitCode {
        let answer: ServiceClient.Answer
        do {
            answer = try await context.orchestrator.send(method, path, query: query, body: body)
        } catch FleetctlError.api(_, _, "no_change", let message, _) {
            return NoChange.report(message, context: context)
        }
        let json = try answer.decode(JSONValue.self, from: context.orchestrator.name)
        // 200 is a dry run's preview, 202 an accepted operation.
        guard answer.status == 202 else {
            let preview = try answer.decode(OperationPreview.self, from: context.orchestrator.name)
            if context.output == .json {
                context.console.printJSON(json)
            } else {
                context.console.print(OperationReport.preview(preview))
            }
            return .success
        }
        let accepted = try answer.decode(AcceptedOperation.self, from: context.orchestrator.name)
        return try await OperationWatcher(context: context).follow(accepted, acceptedJSON: json, display: .single, noWait: noWait)
    }
}

/// The orchestrator's 409 `no_change` (every device already runs this): the fleet is as asked, so
/// for the operator (and a script that runs the same command twice) it is a success.
enum NoChange {
    static func report(_ message: String, context: CommandContext) -> ExitCode {
        if context.output == .json {
            context.console.printJSON(.object(["changed": .bool(false), "message": .string(message)]))
        } else {
            context.console.print("Nothing to change: \(message)")
        }
        return .success
    }
}
