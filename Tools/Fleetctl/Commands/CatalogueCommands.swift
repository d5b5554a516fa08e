import ArgumentParser
import FleetContract
import Foundation
import RegistryContract

/// `fleetctl create-model --name N --task T --format F`: a model without versions yet.
struct CreateModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-model", abstract: "Add a model to the catalogue (then its versions with add-version).")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The model's name, unique in the catalogue.")
    var name: String

    @Option(help: "What it is for: object_detection, classification, segmentation, pose_estimation, ocr, embedding or other.")
    var task: RegistrySchema.ModelTask

    @Option(help: "Its weights' form: onnx, tensorrt, openvino, tflite, torchscript or other.")
    var format: RegistrySchema.ModelFormat

    @Option(help: "What it does, for people.")
    var description: String?

    @Option(name: .customLong("label"), help: "A label; repeat for several.")
    var labels: [String] = []

    func run() async throws {
        let new = RegistrySchema.NewModel(name: name, description: description, task: task, format: format, labels: labels.isEmpty ? nil : labels)
        try await global.run { context in
            let registry = context.registry
            let model = try await registry.call { try await registry.registryAPI.createModel(body: .json(new)).created.body.json }
            return try context.report(model) { model in
                "Created model \(model.name) (\(model.id)): \(model.task.rawValue), \(model.format.rawValue), labels \(Format.list(model.labels))\n"
                    + "Add a version: fleetctl add-version \(model.id) --version 1.0.0 --artifact URI --sha256 HEX --size BYTES"
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
            let registry = context.registry
            let updated = try await registry.call {
                try await registry.registryAPI.updateModel(
                    path: .init(modelId: model.text), body: .json(RegistrySchema.ModelUpdate(description: description))
                ).ok.body.json
            }
            return try context.report(updated, render: ModelsCommand.render)
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
            let registry = context.registry
            let path = Operations.GetModel.Input.Path(modelId: model.text)
            let current = try await registry.call { try await registry.registryAPI.getModel(path: path).ok.body.json }
            let updated = try await registry.call {
                try await registry.registryAPI.updateModel(
                    path: .init(modelId: model.text), body: .json(RegistrySchema.ModelUpdate(labels: edits.applied(to: current.labels)))
                )
                .ok.body.json
            }
            return try context.report(updated, render: ModelsCommand.render)
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
            let registry = context.registry
            // Read first: the question names the model, and a wrong id fails before it is asked.
            let current = try await registry.call { try await registry.registryAPI.getModel(path: .init(modelId: model.text)).ok.body.json }
            return try await context.delete(
                what: "model \(current.name) (\(model.text))", identity: ["model_id": .string(model.text)], options: options
            ) {
                _ = try await registry.call { try await registry.registryAPI.deleteModel(path: .init(modelId: model.text)).noContent }
            }
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
            let new = RegistrySchema.NewModelVersion(
                version: version, artifactUri: artifact, sha256: sha256, sizeBytes: size,
                inputs: try inputs.map { try contractValue($0.value, what: "--inputs") },
                outputs: try outputs.map { try contractValue($0.value, what: "--outputs") },
                defaultSettings: defaults.isEmpty ? nil : try contractValue(.object(defaults), what: "the default settings"))
            let registry = context.registry
            let added = try await registry.call {
                try await registry.registryAPI.addModelVersion(path: .init(modelId: model.text), body: .json(new)).created.body.json
            }
            return try context.report(added, render: Self.render)
        }
    }

    static func render(_ version: RegistrySchema.ModelVersion) -> String {
        let rows = [
            ("artifact", version.artifactUri), ("sha256", version.sha256),
            ("size", "\(Format.bytes(version.sizeBytes)) (\(version.sizeBytes) bytes)"), ("defaults", Format.settings(version.defaultSettings)),
        ]
        let lines = rows.map { "  \($0.0.padding(toLength: 10, withPad: " ", startingAt: 0))\($0.1)" }
        return "Added version \(version.version) to model \(version.modelId): \(version.status.rawValue)\n" + lines.joined(separator: "\n")
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
            let registry = context.registry
            let deprecated = try await registry.call {
                try await registry.registryAPI.deprecateModelVersion(path: .init(modelId: model.text, version: version)).ok.body.json
            }
            return try context.report(deprecated) { deprecated in
                "Version \(deprecated.version) of model \(deprecated.modelId) is \(deprecated.status.rawValue): "
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
            let registry = context.registry
            // Read first: a wrong model or version fails before the question is asked.
            _ = try await registry.call { try await registry.registryAPI.getModelVersion(path: .init(modelId: model.text, version: version)).ok }
            return try await context.delete(
                what: "version \(version) of model \(model.text)", identity: ["model_id": .string(model.text), "version": .string(version)],
                options: options
            ) {
                _ = try await registry.call {
                    try await registry.registryAPI.deleteModelVersion(path: .init(modelId: model.text, version: version)).noContent
                }
            }
        }
    }
}
