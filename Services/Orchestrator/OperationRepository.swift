import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime

/// The devices' pipelines and the operations, as the REST API reads and commits them.
///
/// The service keeps them in PostgreSQL (``PostgresOperationStore``, which also holds the outbox
/// and the agents' reports for the delivery loops); the handlers' tests use one in memory. A
/// refusal is a `DomainError`, which the HTTP layer answers.
protocol OperationRepository: Sendable {
    /// What each of `deviceIDs` runs now, with its revision (devices never assigned are absent).
    func currentPipelines(_ deviceIDs: [UUID]) async throws -> [UUID: (pipelines: [DesiredState.Pipeline], revision: Int)]
    /// A device's revisions, newest first.
    func history(of deviceID: UUID) async throws -> [PipelineHistoryEntry]
    /// Commits the operation as one step: each device's next revision, each affected agent's next
    /// generation with its whole desired-state document queued, the operation with every device
    /// `pending`. `DomainError.changedMeanwhile` when a device's revision is no longer the one
    /// the plan read.
    @discardableResult
    func apply(_ operation: NewOperation) async throws -> (generations: [String: Int64], summary: OperationSummary)
    func operation(_ id: UUID) async throws -> OperationSummary?
    /// Newest first; `before` is the cursor (the last position of the previous page).
    func operations(limit: Int, before: Int64?) async throws -> (items: [OperationSummary], next: Int64?)
    /// The operation's devices by site, server and key, of one status when given.
    func devices(of operationID: UUID, status: DeviceStatus?) async throws -> [OperationDevice]
    /// Each device's pipelines before and after the operation.
    func changes(of operationID: UUID) async throws -> [OperationChange]
}

/// The orchestrator's questions to the registry (``RegistryClient`` asks over MQTT).
protocol RegistryLookup: Sendable {
    /// Devices matching `targets` (ids, or the selector's sites, groups and labels) by site,
    /// server and key. Ids that do not exist are absent.
    func devices(_ targets: DeviceTargets) async throws -> [RegistryDevice]
    /// The sites among `siteIDs` with at least one reachable device (a server online).
    func onlineSites(_ siteIDs: [String]) async throws -> Set<String>
    /// A model version; nil when the registry does not know it.
    func modelVersion(modelID: UUID, version: String) async throws -> RegistryModelVersion?
    /// Every server with its capacity and presence, for placement.
    func servers() async throws -> [RegistryServer]
}

extension DomainError {
    /// Another operation changed the device between this one's plan and its commit.
    static func changedMeanwhile(_ deviceID: UUID) -> DomainError {
        .conflict(
            "device \(deviceID.lowercasedString) was changed by another operation since this one was planned; try again", field: "device_id",
            code: "changed_meanwhile")
    }
}
