import ArgumentParser
import FleetContract

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
            let path = "/v1/devices/\(device.text)/pipelines"
            if history {
                try await context.printList(context.orchestrator, path + "/history", as: PipelineRevision.self, render: Self.render)
            } else {
                try await context.printObject(context.orchestrator, path, as: DevicePipelines.self, render: Self.render)
            }
            return .success
        }
    }

    static func render(_ current: DevicePipelines) -> String {
        let heading = "Device \(current.deviceID.uuidString.lowercased()), revision \(current.revision)"
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
                String(revision.revision), Format.date(revision.createdAt), revision.operationID.uuidString.lowercased(),
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
            var body = options.fields
            body["pipeline"] = try PipelineFile.pipeline(at: file)
            return try await SingleDeviceOperation(
                context: context, method: .POST, path: "/v1/devices/\(device.text)/pipelines", body: .object(body), noWait: options.noWait
            ).run()
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
            var body = options.fields
            body["pipeline"] = try PipelineFile.pipeline(at: file)
            return try await SingleDeviceOperation(
                context: context, method: .PUT, path: "/v1/devices/\(device.text)/pipelines/\(index)", body: .object(body), noWait: options.noWait
            ).run()
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
        var query: [(String, String)] = []
        if options.dryRun { query.append(("dry_run", "true")) }
        if options.allowOffline { query.append(("allow_offline", "true")) }
        try await global.run { context in
            try await SingleDeviceOperation(
                context: context, method: .DELETE, path: "/v1/devices/\(device.text)/pipelines/\(index)", query: query, body: nil,
                noWait: options.noWait
            ).run()
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
            var body = options.fields
            body["settings"] = .object(try SettingArgument.object(settings))
            return try await SingleDeviceOperation(
                context: context, method: .PATCH, path: "/v1/devices/\(device.text)/pipelines/\(index)/stages/\(stage)", body: .object(body),
                noWait: options.noWait
            ).run()
        }
    }
}
