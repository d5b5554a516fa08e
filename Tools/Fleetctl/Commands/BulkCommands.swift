import ArgumentParser
import FleetContract

/// `fleetctl assign`: give every selected device exactly these pipelines (its others are removed).
struct AssignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assign",
        abstract: "Assign pipelines to many devices: each selected device runs exactly these pipelines afterwards.",
        discussion: """
            Without --yes, the orchestrator's preview is printed and you are asked to confirm; with no terminal to \
            ask, nothing is applied (exit 3). The operation is then followed until every device has applied, \
            failed or timed out.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var selectors: DeviceSelectors

    @Option(
        help: "The pipelines: a JSON array of {\"name\", \"stages\": [{\"model_id\", \"version\", \"settings\"}]}, or one such object; - reads stdin."
    )
    var file: String

    @OptionGroup var options: BulkOptions

    func run() async throws {
        try await global.run { context in
            let pipelines = try PipelineFile.pipelines(at: file)
            return try await BulkOperation(
                context: context, fields: ["targets": selectors.targets, "pipelines": .array(pipelines)], options: options
            ) { body, api in
                let output = try await api.assignPipelines(body: .json(try contractValue(body, what: "the request")))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}

/// `fleetctl bulk-settings`: change a stage's settings in the pipeline of that name on many devices.
struct BulkSettingsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulk-settings",
        abstract: "Change settings of one stage of a named pipeline on many devices.",
        discussion: "Devices that run no pipeline of that name are skipped. Values are JSON when they parse as JSON, else text.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var selectors: DeviceSelectors

    @Option(help: "The pipeline's name.")
    var pipeline: String

    @Option(help: "The stage's index in the pipeline, from 0.")
    var stage: UInt = 0

    @Argument(help: "Settings to merge into the stage's.")
    var settings: [SettingArgument]

    @OptionGroup var options: BulkOptions

    func validate() throws {
        guard !settings.isEmpty else { throw ValidationError("give at least one key=value setting") }
        _ = try SettingArgument.object(settings)
    }

    func run() async throws {
        try await global.run { context in
            let fields: [String: JSONValue] = [
                "targets": selectors.targets, "pipeline_name": .string(pipeline), "stage": .number(Double(stage)),
                "settings": .object(try SettingArgument.object(settings)),
            ]
            return try await BulkOperation(context: context, fields: fields, options: options) { body, api in
                let output = try await api.updateSettingsOfMany(body: .json(try contractValue(body, what: "the request")))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}
