import ArgumentParser
import FleetContract
import OrchestratorContract

/// An operation on many devices the way an operator runs one: the orchestrator's preview
/// (`dry_run`), a question, then the operation with `confirm`, followed until it settles. With
/// `--yes` the preview and the question are skipped; with `--dry-run` only the preview is made.
struct BulkOperation {
    let context: CommandContext
    /// The request's own fields (targets, pipelines, …); the options are added here.
    let fields: [String: JSONValue]
    let options: BulkOptions
    /// Sends the request's body (the fields, the options, `dry_run` or `confirm`) with the
    /// orchestrator's generated client: `assignPipelines`, `updateSettingsOfMany`,
    /// `revertOperation` or `retryOperation`.
    let request: @Sendable (_ body: JSONValue, _ api: OrchestratorContract.Client) async throws -> OperationOutcome

    func run() async throws -> ExitCode {
        var previewed: Int?
        if options.dryRun || !options.yes {
            guard case .preview(let preview) = try await send(["dry_run": .bool(true)]) else {
                throw FleetctlError.unexpectedResponse(service: context.orchestrator.name, detail: "it applied a dry run")
            }
            if options.dryRun {
                if context.output == .json {
                    try context.printJSON(preview)
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
        let outcome: OperationOutcome
        do {
            outcome = try await send(["confirm": .bool(true)])
        } catch FleetctlError.api(_, _, "no_change", let message, _) {
            return NoChange.report(message, context: context)
        }
        guard case .accepted(let accepted) = outcome else {
            throw FleetctlError.unexpectedResponse(service: context.orchestrator.name, detail: "it answered a confirmed operation with a preview")
        }
        if let previewed, previewed != accepted.operation.devices {
            // The orchestrator plans again on confirm: devices that came or went since the preview change the set.
            context.console.error(
                "note: the operation takes \(OperationReport.count(accepted.operation.devices, "device")); the preview showed \(previewed) "
                    + "(the selection changed in between)")
        }
        return try await OperationWatcher(context: context).follow(accepted, display: .many, noWait: options.noWait)
    }

    private func send(_ extra: [String: JSONValue]) async throws -> OperationOutcome {
        let body = fields.merging(options.fields) { $1 }.merging(extra) { $1 }
        let orchestrator = context.orchestrator
        let api = try orchestrator.orchestratorAPI
        return try await orchestrator.call { try await request(.object(body), api) }
    }
}

/// An operation on one device: sent at once (the operator named the device, no confirmation is
/// needed), then followed with a one-line display.
struct SingleDeviceOperation {
    let context: CommandContext
    let noWait: Bool
    /// Sends the request with the orchestrator's generated client.
    let request: @Sendable (_ api: OrchestratorContract.Client) async throws -> OperationOutcome

    func run() async throws -> ExitCode {
        let outcome: OperationOutcome
        do {
            let orchestrator = context.orchestrator
            let api = try orchestrator.orchestratorAPI
            outcome = try await orchestrator.call { try await request(api) }
        } catch FleetctlError.api(_, _, "no_change", let message, _) {
            return NoChange.report(message, context: context)
        }
        switch outcome {
        case .preview(let preview):
            if context.output == .json {
                try context.printJSON(preview)
            } else {
                context.console.print(OperationReport.preview(preview))
            }
            return .success
        case .accepted(let accepted):
            return try await OperationWatcher(context: context).follow(accepted, display: .single, noWait: noWait)
        }
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
