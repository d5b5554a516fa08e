import ArgumentParser
import FleetContract
import Foundation

/// `fleetctl create-model --name N --task T --format F`: a model without versions yet.
struct CreateModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-model", abstract: "Add a model to the catalogue (then its versions with add-version).")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The model's name, unique in the catalogue.")
    var name: String

    @Option(help: "What it is for: object_detection, classification, segmentation, pose_estimation, ocr, embedding or other.")
    var task: String

    @Option(help: "Its weights' form: onnx, tensorrt, openvino, tflite, torchscript or other.")
    var format: String

    @Option(help: "What it does, for people.")
    var description: String?

    @Option(name: .customLong("label"), help: "A label; repeat for several.")
    var labels: [String] = []

    func run() async throws {
        var body: [String: JSONValue] = ["name": .string(name), "task": .string(task), "format": .string(format)]
        if let description { body["description"] = .string(description) }
        if !labels.isEmpty { body["labels"] = .array(labels.map(JSONValue.string)) }
        try await global.run { context in
            try await context.write(.POST, "/v1/models", body: .object(body), as: ModelSummary.self) { model in
                let id = model.id.uuidString.lowercased()
                return "Created model \(model.name) (\(id)): \(model.task), \(model.format), labels \(Format.list(model.labels))\n"
                    + "Add a version: fleetctl add-version \(id) --version 1.0.0 --artifact URI --sha256 HEX --size BYTES"
            }
        }
    }
}

/// `fleetctl update-model MODEL_ID --description TEXT`.
struct UpdateModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update-model", abstract: "Change a model's description (its labels: label-model).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The model's id.")
    var model: IDArgument

    @Option(help: "The new description; \"\" clears it.")
    var description: String

    func run() async throws {
        try await global.run { context in
            try await context.write(
                .PATCH, "/v1/models/\(model.text)", body: .object(["description": .string(description)]), as: ModelSummary.self,
                render: ModelsCommand.render)
        }
    }
}

/// `fleetctl label-model MODEL_ID --add L --remove L`.
struct LabelModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "label-model", abstract: "Add labels to a model or remove them.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The model's id.")
    var model: IDArgument

    @OptionGroup var edits: LabelEdits

    func run() async throws {
        try await global.run { context in
            let path = "/v1/models/\(model.text)"
            let current = try await context.registry.get(path, as: ModelSummary.self)
            let labels = JSONValue.array(edits.applied(to: current.labels).map(JSONValue.string))
            return try await context.write(.PATCH, path, body: .object(["labels": labels]), as: ModelSummary.self, render: ModelsCommand.render)
        }
    }
}

/// `fleetctl delete-model MODEL_ID [--yes]`: a model whose versions are all deleted.
struct DeleteModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-model", abstract: "Delete a model that has no versions left (delete-version first).",
        discussion: "Without --yes you are asked to confirm; with no terminal to ask, nothing is deleted (exit 3).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The model's id.")
    var model: IDArgument

    @OptionGroup var options: DeletionOptions

    func run() async throws {
        try await global.run { context in
            let path = "/v1/models/\(model.text)"
            // Read first: the question names the model, and a wrong id fails before it is asked.
            let current = try await context.registry.get(path, as: ModelSummary.self)
            return try await context.delete(
                path, what: "model \(current.name) (\(model.text))", identity: ["model_id": .string(model.text)], options: options)
        }
    }
}

/// `fleetctl add-version MODEL_ID --version V --artifact URI --sha256 HEX --size BYTES`.
struct AddVersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-version", abstract: "Add a version (an artifact) to a model; it is active at once.",
        discussion: """
            The agents fetch the artifact and check its size and SHA-256 before they run it (sha256sum FILE; stat -c %s FILE). \
            Default settings come from --settings-file (a JSON object; - reads stdin) and --setting key=value, which wins \
            over the file; values are JSON when they parse as JSON, else text.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The model's id.")
    var model: IDArgument

    @Option(help: "The version, MAJOR.MINOR.PATCH (1.0.0), unique within the model.")
    var version: String

    @Option(help: "Where the weights are: a file://, http(s)://, s3:// or oci:// URI.")
    var artifact: String

    @Option(help: "The artifact's SHA-256, 64 hexadecimal digits.")
    var sha256: String

    @Option(help: "The artifact's size in bytes.")
    var size: Int64

    @Option(name: .customLong("setting"), help: "A default setting; repeat for several.")
    var settings: [SettingArgument] = []

    @Option(help: "Default settings from a JSON object in this file; - reads stdin.")
    var settingsFile: String?

    @Option(help: "A description of the inputs, as JSON.")
    var inputs: JSONArgument?

    @Option(help: "A description of the outputs, as JSON.")
    var outputs: JSONArgument?

    func validate() throws {
        _ = try SettingArgument.object(settings)
    }

    func run() async throws {
        try await global.run { context in
            var defaults: [String: JSONValue] = [:]
            if let settingsFile {
                guard case .object(let members) = try JSONFile.read(settingsFile) else {
                    throw FleetctlError.invalidInput("\(settingsFile): the default settings are not a JSON object")
                }
                defaults = members
            }
            defaults.merge(try SettingArgument.object(settings)) { $1 }
            var body: [String: JSONValue] = [
                "version": .string(version), "artifact_uri": .string(artifact), "sha256": .string(sha256), "size_bytes": .number(Double(size)),
            ]
            if !defaults.isEmpty { body["default_settings"] = .object(defaults) }
            if let inputs { body["inputs"] = inputs.value }
            if let outputs { body["outputs"] = outputs.value }
            return try await context.write(
                .POST, "/v1/models/\(model.text)/versions", body: .object(body), as: ModelVersionSummary.self, render: Self.render)
        }
    }

    static func render(_ version: ModelVersionSummary) -> String {
        let rows = [
            ("artifact", version.artifactURI), ("sha256", version.sha256),
            ("size", "\(Format.bytes(version.sizeBytes)) (\(version.sizeBytes) bytes)"), ("defaults", Format.settings(version.defaultSettings)),
        ]
        let lines = rows.map { "  \($0.0.padding(toLength: 10, withPad: " ", startingAt: 0))\($0.1)" }
        return "Added version \(version.version) to model \(version.modelID.uuidString.lowercased()): \(version.status)\n"
            + lines.joined(separator: "\n")
    }
}

/// `fleetctl deprecate-version MODEL_ID VERSION`.
struct DeprecateVersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deprecate-version",
        abstract: "Deprecate a model version: new pipelines cannot use it; devices that run it keep it.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The model's id.")
    var model: IDArgument

    @Argument(help: "The version (1.0.0).")
    var version: String

    func run() async throws {
        try await global.run { context in
            try await context.write(
                .POST, "/v1/models/\(model.text)/versions/\(ServiceClient.segment(version))/deprecate", body: nil, as: ModelVersionSummary.self
            ) { deprecated in
                "Version \(deprecated.version) of model \(deprecated.modelID.uuidString.lowercased()) is \(deprecated.status): "
                    + "new pipelines cannot use it; devices that run it keep it."
            }
        }
    }
}

/// `fleetctl delete-version MODEL_ID VERSION [--yes]`.
struct DeleteVersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-version", abstract: "Delete a model version that no device's pipeline uses.",
        discussion: """
            The registry refuses while a device's pipeline has a stage on the version, naming the devices. Without --yes you \
            are asked to confirm; with no terminal to ask, nothing is deleted (exit 3).
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The model's id.")
    var model: IDArgument

    @Argument(help: "The version (1.0.0).")
    var version: String

    @OptionGroup var options: DeletionOptions

    func run() async throws {
        try await global.run { context in
            let path = "/v1/models/\(model.text)/versions/\(ServiceClient.segment(version))"
            // Read first: a wrong model or version fails before the question is asked.
            _ = try await context.registry.get(path, as: ModelVersionSummary.self)
            return try await context.delete(
                path, what: "version \(version) of model \(model.text)", identity: ["model_id": .string(model.text), "version": .string(version)],
                options: options)
        }
    }
}
