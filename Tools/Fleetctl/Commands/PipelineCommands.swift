import ArgumentParser
import FleetContract
import OrchestratorContract

/// `fleetctl pipelines DEVICE_ID [--history]`: what one device runs, or every revision of it.
struct PipelinesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipelines", abstract: "Show the pipelines a device runs, or their history.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Flag(help: "Every revision of the device's pipelines, newest first, with the operation that made it.")
    var history = false

    func run() async throws {
        try await global.run { context in
            let orchestrator = context.orchestrator
            let api = try orchestrator.orchestratorAPI
            if history {
                let revisions = try await orchestrator.call {
                    try await api.getDevicePipelineHistory(path: .init(deviceId: device.text)).ok.body.json.items
                }
                return try context.report(revisions, render: Self.render)
            }
            let current = try await orchestrator.call { try await api.getDevicePipelines(path: .init(deviceId: device.text)).ok.body.json }
            return try context.report(current, render: Self.render)
        }
    }

    static func render(_ current: OrchestratorSchema.DevicePipelines) -> String {
        let heading = "Device \(current.deviceId), revision \(current.revision)"
        guard !current.pipelines.isEmpty else { return heading + ": no pipelines." }
        var table = TextTable("index", "pipeline", "stage", "model", "version", "settings", numeric: [0, 2])
        table.maximumCellWidth = 100
        for (index, pipeline) in current.pipelines.enumerated() {
            for (position, stage) in pipeline.stages.enumerated() {
                table.add(
                    position == 0 ? String(index) : "", position == 0 ? pipeline.name : "", String(position), stage.modelName, stage.version,
                    Format.settings(stage.settings))
            }
        }
        return heading + "\n\n" + table.render()
    }

    static func render(_ revisions: [PipelineRevision]) -> String {
        var table = TextTable("revision", "created", "operation", "pipelines", numeric: [0])
        for revision in revisions {
            table.add(
                String(revision.revision), Format.date(revision.createdAt), revision.operationId,
                ChangeDescription.names(revision.pipelines))
        }
        return revisions.isEmpty ? "No pipelines were ever assigned to this device." : table.render()
    }
}

/// `fleetctl add-pipeline DEVICE_ID --file PIPELINE.json`: one more pipeline on a device.
struct AddPipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add-pipeline", abstract: "Add a pipeline to a device.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Option(help: "The pipeline, one JSON object ({\"name\", \"stages\": [{\"model_id\", \"version\", \"settings\"}]}); - reads stdin.")
    var file: String

    @OptionGroup var options: SingleDeviceOptions

    func run() async throws {
        try await global.run { context in
            var fields = options.fields
            fields["pipeline"] = try PipelineFile.pipeline(at: file)
            let body: OrchestratorSchema.PipelineBody = try contractValue(.object(fields), what: "the pipeline")
            return try await SingleDeviceOperation(context: context, noWait: options.noWait) { [device] api in
                let output = try await api.addDevicePipeline(path: .init(deviceId: device.text), body: .json(body))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}

/// `fleetctl replace-pipeline DEVICE_ID INDEX --file PIPELINE.json`.
struct ReplacePipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replace-pipeline", abstract: "Replace one pipeline of a device (by its index, from 0).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Argument(help: "The pipeline's index on the device, from 0 (see `fleetctl pipelines`).")
    var index: UInt

    @Option(help: "The new pipeline, one JSON object; - reads stdin.")
    var file: String

    @OptionGroup var options: SingleDeviceOptions

    func run() async throws {
        try await global.run { context in
            var fields = options.fields
            fields["pipeline"] = try PipelineFile.pipeline(at: file)
            let body: OrchestratorSchema.PipelineBody = try contractValue(.object(fields), what: "the pipeline")
            return try await SingleDeviceOperation(context: context, noWait: options.noWait) { [device, index] api in
                let output = try await api.replaceDevicePipeline(path: .init(deviceId: device.text, index: Int(index)), body: .json(body))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}

/// `fleetctl remove-pipeline DEVICE_ID INDEX`.
struct RemovePipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove-pipeline", abstract: "Remove one pipeline of a device (by its index, from 0).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Argument(help: "The pipeline's index on the device, from 0.")
    var index: UInt

    @OptionGroup var options: SingleDeviceOptions

    func validate() throws {
        // The orchestrator's DELETE reads dry_run and allow_offline from the query and has no
        // body, so the watchdog cannot be set: it is the default 120 s.
        if options.watchdogSeconds != nil { throw ValidationError("remove-pipeline cannot set --watchdog (the API takes no watchdog here)") }
    }

    func run() async throws {
        let query = Operations.RemoveDevicePipeline.Input.Query(
            dryRun: options.dryRun ? true : nil, allowOffline: options.allowOffline ? true : nil)
        try await global.run { context in
            try await SingleDeviceOperation(context: context, noWait: options.noWait) { [device, index] api in
                let output = try await api.removeDevicePipeline(path: .init(deviceId: device.text, index: Int(index)), query: query)
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}

/// `fleetctl set-settings DEVICE_ID INDEX STAGE key=value…`: merge settings into one stage.
struct SetSettingsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-settings",
        abstract: "Change settings of one stage of one pipeline of a device.",
        discussion: "Values are JSON when they parse as JSON (0.6, true, [640,640], \"text\"), else text: confidence_threshold=0.6 mode=fast.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Argument(help: "The pipeline's index on the device, from 0.")
    var index: UInt

    @Argument(help: "The stage's index in the pipeline, from 0.")
    var stage: UInt

    @Argument(help: "Settings to merge into the stage's.")
    var settings: [SettingArgument]

    @OptionGroup var options: SingleDeviceOptions

    func validate() throws {
        guard !settings.isEmpty else { throw ValidationError("give at least one key=value setting") }
        _ = try SettingArgument.object(settings)
    }

    func run() async throws {
        try await global.run { context in
            var fields = options.fields
            fields["settings"] = .object(try SettingArgument.object(settings))
            let body: OrchestratorSchema.StageSettingsBody = try contractValue(.object(fields), what: "the settings")
            return try await SingleDeviceOperation(context: context, noWait: options.noWait) { [device, index, stage] api in
                let output = try await api.updateDeviceStageSettings(
                    path: .init(deviceId: device.text, index: Int(index), stage: Int(stage)), body: .json(body))
                return try OperationOutcome(accepted: { try output.accepted.body.json }, preview: { try output.ok.body.json })
            }.run()
        }
    }
}
