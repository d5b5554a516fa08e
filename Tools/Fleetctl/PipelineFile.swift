import FleetContract

/// Pipelines from a file the operator wrote, in the orchestrator's request form
/// (`{"name": …, "stages": [{"model_id": …, "version": …, "settings": {…}}]}`). The tool checks
/// only their shape and sends them as written: the orchestrator validates every field and names
/// it in its error (`pipelines[0].stages[1].version`), so its rules are not copied here.
enum PipelineFile {
    /// Every pipeline of the file: a JSON array of pipelines, or one pipeline object.
    static func pipelines(at path: String) throws -> [JSONValue] {
        let pipelines: [JSONValue]
        switch try JSONFile.read(path) {
        case .array(let items): pipelines = items
        case let object: pipelines = [object]
        }
        for (index, pipeline) in pipelines.enumerated() {
            try checkShape(pipeline, path: path, position: pipelines.count > 1 ? "pipeline \(index)" : "the pipeline")
        }
        return pipelines
    }

    /// The file's one pipeline: an object, or an array of exactly one (the form `assign` reads).
    static func pipeline(at path: String) throws -> JSONValue {
        var value = try JSONFile.read(path)
        if case .array(let items) = value {
            guard items.count == 1, let only = items.first else {
                throw FleetctlError.invalidInput("\(path): give one pipeline, not \(items.count)")
            }
            value = only
        }
        try checkShape(value, path: path, position: "the pipeline")
        return value
    }

    private static func checkShape(_ value: JSONValue, path: String, position: String) throws {
        guard case .object(let members) = value else {
            throw FleetctlError.invalidInput("\(path): \(position) is not an object")
        }
        guard case .string = members["name"] else {
            throw FleetctlError.invalidInput("\(path): \(position) has no \"name\" string")
        }
        guard case .array(let stages) = members["stages"], !stages.isEmpty else {
            throw FleetctlError.invalidInput("\(path): \(position) has no \"stages\" (a list of {\"model_id\", \"version\", \"settings\"})")
        }
    }
}
