import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime

@testable import Orchestrator

/// The orchestrator's operation repository in memory, for the handlers' tests. It answers as
/// ``PostgresOperationStore`` does (`OperationRepositoryTests` holds both to the same checks);
/// there is no delivery, so devices stay `pending` until a test settles them.
actor InMemoryOperationRepository: OperationRepository {
    private struct Current {
        var pipelines: [DesiredState.Pipeline]
        var revision: Int
    }

    private struct Stored {
        var seq: Int64
        var operation: NewOperation
        var createdAt: Date
        var devices: [OperationDevice]
    }

    private var current: [UUID: Current] = [:]
    private var histories: [UUID: [PipelineHistoryEntry]] = [:]
    private var operations: [Stored] = []
    private(set) var generations: [String: Int64] = [:]
    private var interloper: UUID?

    func currentPipelines(_ deviceIDs: [UUID]) async throws -> [UUID: (pipelines: [DesiredState.Pipeline], revision: Int)] {
        var found: [UUID: (pipelines: [DesiredState.Pipeline], revision: Int)] = [:]
        for id in deviceIDs { if let entry = current[id] { found[id] = (entry.pipelines, entry.revision) } }
        return found
    }

    func history(of deviceID: UUID) async throws -> [PipelineHistoryEntry] { (histories[deviceID] ?? []).reversed() }

    func apply(_ operation: NewOperation) async throws -> (generations: [String: Int64], summary: OperationSummary) {
        if let device = interloper {
            interloper = nil
            current[device, default: Current(pipelines: [], revision: 0)].revision += 1
        }
        for change in operation.changes where (current[change.device.id]?.revision ?? 0) != (operation.revisions[change.device.id] ?? 0) {
            throw DomainError.changedMeanwhile(change.device.id)
        }
        let now = Date()
        var touched: [String: Int64] = [:]
        for agent in Set(operation.changes.map(\.device.serverID)) {
            generations[agent, default: 0] += 1
            touched[agent] = generations[agent]
        }
        var devices: [OperationDevice] = []
        for change in operation.changes {
            let revision = (current[change.device.id]?.revision ?? 0) + 1
            current[change.device.id] = Current(pipelines: change.after, revision: revision)
            histories[change.device.id, default: []].append(
                PipelineHistoryEntry(revision: revision, pipelines: change.after, operationID: operation.id, createdAt: now))
            devices.append(
                OperationDevice(
                    deviceID: change.device.id, deviceName: change.device.name, siteID: change.device.siteID, serverID: change.device.serverID,
                    generation: touched[change.device.serverID]!, status: .pending, reason: nil, progress: nil, updatedAt: now))
        }
        let stored = Stored(seq: Int64(operations.count + 1), operation: operation, createdAt: now, devices: devices)
        operations.append(stored)
        return (touched, summary(of: stored))
    }

    private func summary(of stored: Stored) -> OperationSummary {
        var counts = Dictionary(uniqueKeysWithValues: DeviceStatus.allCases.map { ($0.rawValue, 0) })
        for device in stored.devices { counts[device.status.rawValue, default: 0] += 1 }
        let operation = stored.operation
        return OperationSummary(
            id: operation.id, kind: operation.kind, actor: operation.actor, createdAt: stored.createdAt, reverts: operation.reverts,
            retries: operation.retries, watchdogSeconds: operation.watchdogSeconds, counts: counts, devices: stored.devices.count,
            finished: !stored.devices.contains { $0.status == .pending || $0.status == .delivered })
    }

    func operation(_ id: UUID) async throws -> OperationSummary? {
        operations.first { $0.operation.id == id }.map(summary)
    }

    func operations(limit: Int, before: Int64?) async throws -> (items: [OperationSummary], next: Int64?) {
        let older = operations.reversed().filter { $0.seq < (before ?? .max) }
        let page = Array(older.prefix(limit))
        return (page.map(summary), older.count > limit ? page.last?.seq : nil)
    }

    func devices(of operationID: UUID, status: DeviceStatus?) async throws -> [OperationDevice] {
        let devices = operations.first { $0.operation.id == operationID }?.devices ?? []
        let keys = Dictionary(
            uniqueKeysWithValues: (operations.first { $0.operation.id == operationID }?.operation.changes ?? []).map { ($0.device.id, $0.device.key) }
        )
        return devices.filter { status == nil || $0.status == status }
            .sorted { ($0.siteID, $0.serverID, keys[$0.deviceID] ?? "") < ($1.siteID, $1.serverID, keys[$1.deviceID] ?? "") }
    }

    func changes(of operationID: UUID) async throws -> [OperationChange] {
        guard let stored = operations.first(where: { $0.operation.id == operationID }) else { return [] }
        let statuses = Dictionary(uniqueKeysWithValues: stored.devices.map { ($0.deviceID, $0.status) })
        return stored.operation.changes.map {
            OperationChange(deviceID: $0.device.id, status: statuses[$0.device.id] ?? .pending, before: $0.before, after: $0.after)
        }
    }

    // MARK: What the tests do besides

    /// What the agent's report would do: the device's status in the operation.
    func settle(_ operationID: UUID, device: UUID, _ status: DeviceStatus, reason: String? = nil) {
        guard let index = operations.firstIndex(where: { $0.operation.id == operationID }),
            let position = operations[index].devices.firstIndex(where: { $0.deviceID == device })
        else { return }
        operations[index].devices[position].status = status
        operations[index].devices[position].reason = reason
    }

    /// The next apply finds `device` changed by another operation since its plan.
    func changeBeforeNextApply(_ device: UUID) {
        interloper = device
    }
}

/// The registry as the orchestrator asks it, in memory: devices and model versions a test sets.
actor InMemoryRegistry: RegistryLookup {
    private var devices: [RegistryDevice] = []
    private var versions: [String: RegistryModelVersion] = [:]
    /// When set, every question fails as an unreachable registry does.
    private var down = false

    private var serverList: [RegistryServer] = []

    func add(_ device: RegistryDevice) { devices.append(device) }
    func add(_ server: RegistryServer) { serverList.append(server) }
    func add(_ version: RegistryModelVersion) { versions["\(version.modelID) \(version.version)"] = version }
    func setDown(_ value: Bool) { down = value }

    func devices(_ targets: DeviceTargets) async throws -> [RegistryDevice] {
        if down { throw RegistryClient.unavailable(CancellationError()) }
        let byID = devices.filter { targets.deviceIDs?.contains($0.id) ?? false }
        let hasSelector = targets.siteIDs != nil || targets.groupIDs != nil || targets.labels != nil
        let selected =
            hasSelector
            ? devices.filter { device in
                (targets.siteIDs.map { $0.contains(device.siteID) } ?? true)
                    && (targets.groupIDs.map { device.groupID.map($0.contains) ?? false } ?? true)
                    && (targets.labels.map { Set($0).isSubset(of: device.labels) } ?? true)
            } : []
        var seen = Set<UUID>()
        return (byID + selected).filter { seen.insert($0.id).inserted }.sorted { ($0.siteID, $0.serverID, $0.key) < ($1.siteID, $1.serverID, $1.key) }
    }

    func onlineSites(_ siteIDs: [String]) async throws -> Set<String> {
        if down { throw RegistryClient.unavailable(CancellationError()) }
        return Set(devices.filter { siteIDs.contains($0.siteID) && $0.reachable }.map(\.siteID))
    }

    func servers() async throws -> [RegistryServer] {
        if down { throw RegistryClient.unavailable(CancellationError()) }
        return serverList
    }

    func modelVersion(modelID: UUID, version: String) async throws -> RegistryModelVersion? {
        if down { throw RegistryClient.unavailable(CancellationError()) }
        return versions["\(modelID) \(version)"]
    }
}
