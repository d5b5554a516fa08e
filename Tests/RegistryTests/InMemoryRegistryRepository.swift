import FleetContract
import Foundation
import ServiceRuntime

@testable import Registry

/// The registry's repository in memory, for the handlers' tests: the same answers as the
/// PostgreSQL one for what the handlers ask (orders, filters, cursors, refusals), without a
/// database. Servers and devices come in through ``addServer(_:devices:)``, as hellos would.
actor InMemoryRegistryRepository: RegistryRepository {
    private var models: [(seq: Int64, model: Model)] = []
    private var versionsByModel: [UUID: [ModelVersion]] = [:]
    private var siteNames: [String: String] = [:]
    private var serversByID: [String: Server] = [:]
    private var deviceRows: [(seq: Int64, device: Device)] = []
    private var groupsByID: [UUID: DeviceGroup] = [:]
    private var sequence: Int64 = 0

    private func nextSeq() -> Int64 {
        sequence += 1
        return sequence
    }

    // MARK: Models

    func createModel(_ new: NewModel) async throws -> Model {
        guard !models.contains(where: { $0.model.name == new.name }) else {
            throw DomainError.conflict("a model named '\(new.name)' exists already", field: "name")
        }
        let now = Date()
        let model = Model(
            id: UUID(), name: new.name, description: new.description ?? "", task: new.task, format: new.format, labels: new.labels ?? [],
            createdAt: now, updatedAt: now, versions: nil)
        models.append((nextSeq(), model))
        return try await self.model(id: model.id)!
    }

    func model(id: UUID) async throws -> Model? {
        guard var model = models.first(where: { $0.model.id == id })?.model else { return nil }
        model.versions = versionsByModel[id] ?? []
        return model
    }

    func listModels(task: ModelTask?, label: String?, status: VersionStatus?, search: String?, limit: Int, after: Int64) async throws -> Page<Model> {
        let matching = models.filter { seq, model in
            seq > after && (task.map { model.task == $0 } ?? true) && (label.map { model.labels.contains($0) } ?? true)
                && (search.map { model.name.range(of: $0, options: .caseInsensitive) != nil } ?? true)
                && (status.map { status in (versionsByModel[model.id] ?? []).contains { $0.status == status } } ?? true)
        }
        return page(matching.map { ($0.seq, $0.model) }, limit: limit)
    }

    func updateModel(id: UUID, _ update: ModelUpdate) async throws -> Model? {
        guard let index = models.firstIndex(where: { $0.model.id == id }) else { return nil }
        if let description = update.description { models[index].model.description = description }
        if let labels = update.labels { models[index].model.labels = labels }
        models[index].model.updatedAt = Date()
        return try await model(id: id)
    }

    func deleteModel(id: UUID) async throws -> ModelDeletion {
        guard let index = models.firstIndex(where: { $0.model.id == id }) else { return .notFound }
        let versions = versionsByModel[id] ?? []
        guard versions.isEmpty else { return .hasVersions(versions.map(\.version)) }
        models.remove(at: index)
        return .deleted
    }

    // MARK: Versions

    func versions(of modelID: UUID) async throws -> [ModelVersion] { versionsByModel[modelID] ?? [] }

    func version(modelID: UUID, version: String) async throws -> ModelVersion? {
        versionsByModel[modelID]?.first { $0.version == version }
    }

    func version(modelName: String, version: String) async throws -> ModelVersion? {
        guard let id = models.first(where: { $0.model.name == modelName })?.model.id else { return nil }
        return try await self.version(modelID: id, version: version)
    }

    func addVersion(modelID: UUID, _ new: NewModelVersion) async throws -> ModelVersion? {
        guard let index = models.firstIndex(where: { $0.model.id == modelID }) else { return nil }
        guard try await version(modelID: modelID, version: new.version) == nil else {
            throw DomainError.conflict("version \(new.version) exists already", field: "version")
        }
        let version = ModelVersion(
            modelID: modelID, version: new.version, artifactURI: new.artifactURI, sha256: new.sha256, sizeBytes: new.sizeBytes,
            inputs: new.inputs ?? .object([:]), outputs: new.outputs ?? .object([:]), defaultSettings: new.defaultSettings ?? [:],
            status: .active, createdAt: Date())
        versionsByModel[modelID, default: []].append(version)
        models[index].model.updatedAt = Date()
        return version
    }

    func setStatus(modelID: UUID, version: String, _ status: VersionStatus) async throws -> ModelVersion? {
        guard let index = versionsByModel[modelID]?.firstIndex(where: { $0.version == version }) else { return nil }
        versionsByModel[modelID]![index].status = status
        return versionsByModel[modelID]![index]
    }

    func deleteVersion(modelID: UUID, version: String) async throws -> Bool {
        guard let index = versionsByModel[modelID]?.firstIndex(where: { $0.version == version }) else { return false }
        versionsByModel[modelID]!.remove(at: index)
        return true
    }

    // MARK: Inventory

    /// A server and its devices, as the hello of its agent registers them (the site is made when new).
    func addServer(_ server: Server, devices: [Device]) {
        if siteNames[server.siteID] == nil { siteNames[server.siteID] = server.siteID }
        serversByID[server.id] = server
        for device in devices { deviceRows.append((nextSeq(), device)) }
    }

    func sites() async throws -> [Site] {
        siteNames.keys.sorted().map(summary)
    }

    func site(id: String) async throws -> Site? {
        siteNames[id] == nil ? nil : summary(of: id)
    }

    private func summary(of site: String) -> Site {
        let servers = serversByID.values.filter { $0.siteID == site }
        let serverIDs = Set(servers.map(\.id))
        return Site(
            id: site, name: siteNames[site] ?? site, online: servers.contains(where: \.online), serverCount: servers.count,
            deviceCount: deviceRows.count { serverIDs.contains($0.device.serverID) && !$0.device.gone })
    }

    func createSite(id: String, name: String) async throws -> Site {
        guard siteNames[id] == nil else { throw DomainError.conflict("site '\(id)' exists already", field: "id") }
        siteNames[id] = name
        return summary(of: id)
    }

    func servers(site: String?, online: Bool?) async throws -> [Server] {
        serversByID.values.filter { server in (site.map { $0 == server.siteID } ?? true) && (online.map { $0 == server.online } ?? true) }
            .sorted { $0.id < $1.id }
    }

    func server(id: String) async throws -> Server? { serversByID[id] }

    func groups(site: String) async throws -> [DeviceGroup] {
        groupsByID.values.filter { $0.siteID == site }.sorted { $0.name < $1.name }
    }

    func createGroup(site: String, name: String) async throws -> DeviceGroup {
        guard !groupsByID.values.contains(where: { $0.siteID == site && $0.name == name }) else {
            throw DomainError.conflict("site '\(site)' has a group named '\(name)' already", field: "name")
        }
        let group = DeviceGroup(id: UUID(), siteID: site, name: name)
        groupsByID[group.id] = group
        return group
    }

    func deleteGroup(site: String, id: UUID) async throws -> Bool {
        guard groupsByID[id]?.siteID == site else { return false }
        groupsByID[id] = nil
        for index in deviceRows.indices where deviceRows[index].device.groupID == id { deviceRows[index].device.groupID = nil }
        return true
    }

    /// A device as the registry shows it: reachable while its server is online and it is not gone.
    private func current(_ device: Device) -> Device {
        var device = device
        let server = serversByID[device.serverID]
        device.reachable = (server?.online ?? false) && !device.gone
        device.supportsPipelines = server?.supportsPipelines ?? false
        return device
    }

    private func matching(_ selection: DeviceSelection, after: Int64) -> [(Int64, Device)] {
        deviceRows.map { ($0.seq, current($0.device)) }.filter { seq, device in
            seq > after && (selection.siteIDs.map { $0.contains(device.siteID) } ?? true)
                && (selection.serverIDs.map { $0.contains(device.serverID) } ?? true)
                && (selection.groupIDs.map { ids in device.groupID.map(ids.contains) ?? false } ?? true)
                && (selection.deviceIDs.map { $0.contains(device.id) } ?? true)
                && (selection.labels.map { Set($0).isSubset(of: device.labels) } ?? true)
                && (selection.enabled.map { $0 == device.enabled } ?? true)
                && (selection.online.map { $0 == device.reachable } ?? true)
        }
    }

    func devices(_ selection: DeviceSelection, limit: Int, after: Int64) async throws -> Page<Device> {
        page(matching(selection, after: after), limit: limit)
    }

    func allDevices(_ selection: DeviceSelection) async throws -> [Device] {
        matching(selection, after: 0).map(\.1)
    }

    func device(id: UUID) async throws -> Device? {
        deviceRows.first { $0.device.id == id }.map { current($0.device) }
    }

    func updateDevice(id: UUID, _ update: DeviceUpdate) async throws -> Device? {
        guard let index = deviceRows.firstIndex(where: { $0.device.id == id }) else { return nil }
        let site = deviceRows[index].device.siteID
        if case .some(let newGroup) = update.groupID {
            if let newGroup, groupsByID[newGroup]?.siteID != site {
                throw DomainError.unknownReference("no group \(newGroup.lowercasedString) in site '\(site)'", field: "group_id")
            }
            deviceRows[index].device.groupID = newGroup
        }
        if let name = update.name { deviceRows[index].device.name = name }
        if let enabled = update.enabled { deviceRows[index].device.enabled = enabled }
        if let labels = update.labels { deviceRows[index].device.labels = labels }
        return current(deviceRows[index].device)
    }

    private func page<Item>(_ rows: [(Int64, Item)], limit: Int) -> Page<Item> {
        let items = Array(rows.prefix(limit))
        let next = rows.count > limit ? items.last.map { Cursor.encode($0.0) } : nil
        return Page(items: items.map(\.1), nextCursor: next)
    }
}
