import FleetContract
import Foundation

/// The catalogue and the inventory as the REST API and the MQTT answers read and change them.
///
/// The service keeps them in PostgreSQL (``PostgresRegistryRepository``); the handlers' tests use
/// one in memory. A refusal (a name taken, a reference to nothing) is a `DomainError`, which the
/// HTTP layer answers; the hellos that write servers and devices go through `InventoryUpdater`.
protocol RegistryRepository: Sendable {
    // MARK: Models

    /// Throws `DomainError.conflict` on `name` when a model has that name.
    func createModel(_ new: NewModel) async throws -> Model
    /// The model with its versions.
    func model(id: UUID) async throws -> Model?
    /// Models in creation order after the cursor position `after`; each filter applies when given:
    /// the task, a label, a version of that status, `search` a case-insensitive part of the name.
    func listModels(task: ModelTask?, label: String?, status: VersionStatus?, search: String?, limit: Int, after: Int64) async throws -> Page<Model>
    func updateModel(id: UUID, _ update: ModelUpdate) async throws -> Model?
    /// Deletes a model only while it has no versions, as one step.
    func deleteModel(id: UUID) async throws -> ModelDeletion

    // MARK: Versions

    /// A model's versions, oldest first.
    func versions(of modelID: UUID) async throws -> [ModelVersion]
    func version(modelID: UUID, version: String) async throws -> ModelVersion?
    func version(modelName: String, version: String) async throws -> ModelVersion?
    /// Nil when the model does not exist; `DomainError.conflict` on `version` when it has it.
    func addVersion(modelID: UUID, _ new: NewModelVersion) async throws -> ModelVersion?
    func setStatus(modelID: UUID, version: String, _ status: VersionStatus) async throws -> ModelVersion?
    func deleteVersion(modelID: UUID, version: String) async throws -> Bool

    // MARK: Inventory

    /// Every site with its online state and counts, by id.
    func sites() async throws -> [Site]
    func site(id: String) async throws -> Site?
    /// `DomainError.conflict` on `id` when the site exists.
    func createSite(id: String, name: String) async throws -> Site
    /// Servers by id, of one site and of one presence when given.
    func servers(site: String?, online: Bool?) async throws -> [Server]
    func server(id: String) async throws -> Server?
    /// A site's groups by name.
    func groups(site: String) async throws -> [DeviceGroup]
    /// `DomainError.conflict` on `name` when the site has a group of that name.
    func createGroup(site: String, name: String) async throws -> DeviceGroup
    func deleteGroup(site: String, id: UUID) async throws -> Bool
    /// A page of the devices the selection matches, in registration order after position `after`.
    func devices(_ selection: DeviceSelection, limit: Int, after: Int64) async throws -> Page<Device>
    /// Every device the selection matches, for the MQTT query (which answers all of them).
    func allDevices(_ selection: DeviceSelection) async throws -> [Device]
    func device(id: UUID) async throws -> Device?
    /// Nil when there is no such device; `DomainError.unknownReference` on `group_id` for a group
    /// that is not in the device's site.
    func updateDevice(id: UUID, _ update: DeviceUpdate) async throws -> Device?
}

/// What deleting a model did.
enum ModelDeletion: Sendable, Equatable {
    case deleted
    case notFound
    /// Refused: the model still has these versions.
    case hasVersions([String])
}

/// Where the registry announces its changes (``RegistryEvents`` publishes them over MQTT).
protocol RegistryChangePublishing: Sendable {
    func publish(_ change: RegistryChange) async
}

/// Who can tell which devices' pipelines use a model version (``OrchestratorClient`` asks the
/// orchestrator over MQTT).
protocol ModelVersionUsageSource: Sendable {
    /// `DomainError.unavailable` when nobody can say.
    func usage(of modelID: UUID, version: String) async throws -> ModelVersionUsage
}
