import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime
import Synchronization

/// Turns an operator's pipeline into what an agent runs: each stage's model version is looked up
/// in the registry (it must exist and be active), its artifact and checksum copied, its default
/// settings merged under the operator's, and every field checked. Errors name the field
/// (`pipelines[1].stages[0].version`).
struct PipelineResolver: Sendable {
    let registry: any RegistryLookup

    /// Model versions looked up once per operation.
    final class Lookups: Sendable {
        let versions = Mutex<[String: RegistryModelVersion?]>([:])
    }

    func resolve(_ request: PipelineRequest, field: String, lookups: Lookups = Lookups()) async throws -> DesiredState.Pipeline {
        guard !request.name.isEmpty, request.name.unicodeScalars.count <= 128 else {
            throw APIError.invalid(field: "\(field).name", "must be 1 to 128 characters")
        }
        guard (1...16).contains(request.stages.count) else {
            throw APIError.invalid(field: "\(field).stages", "a pipeline has 1 to 16 stages")
        }
        var stages: [DesiredState.Stage] = []
        for (index, stage) in request.stages.enumerated() {
            let here = "\(field).stages[\(index)]"
            guard !stage.version.isEmpty, stage.version.count <= 64 else {
                throw APIError.invalid(field: "\(here).version", "must be 1 to 64 characters")
            }
            for (name, processors) in [("pre_processors", stage.preProcessors ?? []), ("post_processors", stage.postProcessors ?? [])] {
                guard processors.count <= 16 else { throw APIError.invalid(field: "\(here).\(name)", "at most 16") }
                for (position, processor) in processors.enumerated() where processor.name.isEmpty || processor.name.count > 64 {
                    throw APIError.invalid(field: "\(here).\(name)[\(position)].name", "must be 1 to 64 characters")
                }
            }
            let key = "\(stage.modelID) \(stage.version)"
            let found: RegistryModelVersion?
            if let known = lookups.versions.withLock({ $0[key] }) {
                found = known
            } else {
                found = try await registry.modelVersion(modelID: stage.modelID, version: stage.version)
                lookups.versions.withLock { $0[key] = found }
            }
            let version = try RegistryModelVersion.active(found, modelID: stage.modelID, version: stage.version, field: "\(here).version")
            let settings = version.defaultSettings.merging(stage.settings ?? [:]) { $1 }
            do {
                try ModelSettings.validate(settings, field: "\(here).settings")
            } catch {
                throw APIError(error)
            }
            stages.append(
                DesiredState.Stage(
                    modelID: version.modelID, modelName: version.modelName, version: version.version, artifactURI: version.artifactURI,
                    sha256: version.sha256, settings: settings, preProcessors: stage.preProcessors ?? [], postProcessors: stage.postProcessors ?? []))
        }
        // A new id for each pipeline an operation creates; it stays with the pipeline while only
        // its settings change.
        return DesiredState.Pipeline(id: UUID().uuidString.lowercased(), name: request.name, stages: stages)
    }
}
