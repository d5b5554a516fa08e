import ArgumentParser
import FleetContract
import OrchestratorContract

/// `fleetctl operations [--limit N]`: the latest operations, newest first.
struct OperationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "operations", abstract: "List the latest operations, newest first.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "How many operations (1-500).")
    var limit = 20

    func validate() throws {
        guard (1...500).contains(limit) else { throw ValidationError("--limit takes 1 to 500") }
    }

    func run() async throws {
        try await global.run { context in
            let orchestrator = context.orchestrator
            let operations = try await orchestrator.call {
                try await orchestrator.orchestratorAPI.listOperations(query: .init(limit: limit)).ok.body.json.items
            }
            return try context.report(operations, render: Self.render)
        }
    }

    static func render(_ operations: [OperationSummary]) -> String {
        guard !operations.isEmpty else { return "No operations yet." }
        var table = TextTable("id", "kind", "created", "devices", "applied", "failed", "timed out", "pending", "state", numeric: [3, 4, 5, 6, 7])
        for operation in operations {
            table.add(
                operation.id, operation.kind.rawValue, Format.date(operation.createdAt), String(operation.devices),
                String(operation.applied), String(operation.failed), String(operation.timedOut), String(operation.pending),
                operation.finished ? "finished" : "in progress")
        }
        return table.render()
    }
}

/// `fleetctl operation ID [--watch]`: one operation's counts and the devices that did not apply.
struct OperationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operation",
        abstract: "Show one operation: its counts and the devices that did not apply.",
        discussion: "Exits 1 when any device failed or timed out (so far, without --watch).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The operation's id.")
    var id: IDArgument

    @Flag(help: "Wait with a progress bar until every device has settled.")
    var watch = false

    @Flag(name: .customLong("all"), help: "List every device, applied ones too.")
    var allDevices = false

    func run() async throws {
        try await global.run { context in
            let final: OperationDetail
            if watch {
                let style: ProgressDisplay.Style = context.output == .json ? .silent : .bar
                final = try await OperationWatcher(context: context).watch(id.text, display: ProgressDisplay(style: style, console: context.console))
            } else {
                let orchestrator = context.orchestrator
                final = try await orchestrator.call {
                    try await orchestrator.orchestratorAPI.getOperation(path: .init(operationId: id.text)).ok.body.json
                }
            }
            try context.printObject(final) { OperationReport.summary($0, all: allDevices) }
            return OperationWatcher.exitStatus(final.operation)
        }
    }
}

/// `fleetctl revert ID`: put back what each device of an operation had before it.
struct RevertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revert", abstract: "Revert an operation: each of its devices gets back what it ran before it.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The operation's id.")
    var id: IDArgument

    @OptionGroup var options: BulkOptions

    func run() async throws {
        try await global.run { context in
            try await BulkOperation(context: context, fields: [:], options: options) { [id] body, api in
                let output = try await api.revertOperation(
                    path: .init(operationId: id.text), body: .json(try contractValue(body, what: "the request")))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}

/// `fleetctl retry ID`: send an operation's change again to its failed and timed-out devices.
struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry", abstract: "Retry an operation on its devices that failed or timed out.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The operation's id.")
    var id: IDArgument

    @OptionGroup var options: BulkOptions

    func run() async throws {
        try await global.run { context in
            try await BulkOperation(context: context, fields: [:], options: options) { [id] body, api in
                let output = try await api.retryOperation(
                    path: .init(operationId: id.text), body: .json(try contractValue(body, what: "the request")))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}
