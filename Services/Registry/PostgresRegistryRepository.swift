import FleetContract
import Foundation
import Logging
import PostgresNIO
import ServiceRuntime

/// The registry's data in PostgreSQL (schema `registry`). Every query binds its values through
/// string interpolation; filters are nullable parameters, so each query is one fixed text.
struct PostgresRegistryRepository: RegistryRepository {
    let client: PostgresClient
    let logger: Logger

    private static let encoder = ContractCoding.encoder
    private static let decoder = ContractCoding.decoder

    private func json(_ value: some Encodable) throws -> String {
        String(decoding: try Self.encoder.encode(value), as: UTF8.self)
    }

    private func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try Self.decoder.decode(T.self, from: Data(text.utf8))
    }

    // MARK: Models

    func createModel(_ new: NewModel) async throws -> Model {
        let id = UUID()
        do {
            try await client.query(
                """
                INSERT INTO registry.models (id, name, description, task, format, labels)
                VALUES (\(id), \(new.name), \(new.description ?? ""), \(new.task.rawValue), \(new.format.rawValue), \(new.labels ?? []))
                """,
                logger: logger
            )
        } catch let error as PSQLError where error.isUniqueViolation {
            throw DomainError.conflict("a model named '\(new.name)' exists already", field: "name")
        }
        return try await model(id: id)!
    }

    private static let modelColumns = "m.seq, m.id, m.name, m.description, m.task, m.format, m.labels, m.created_at, m.updated_at"

    private func decodeModels(_ rows: PostgresRowSequence) async throws -> [(Int64, Model)] {
        var models: [(Int64, Model)] = []
        for try await (seq, id, name, description, task, format, labels, createdAt, updatedAt) in rows.decode(
            (Int64, UUID, String, String, String, String, [String], Date, Date).self
        ) {
            models.append(
                (
                    seq,
                    Model(
                        id: id, name: name, description: description, task: ModelTask(rawValue: task) ?? .other,
                        format: ModelFormat(rawValue: format) ?? .other, labels: labels, createdAt: createdAt, updatedAt: updatedAt, versions: nil
                    )
                )
            )
        }
        return models
    }

    func model(id: UUID) async throws -> Model? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.modelColumns) FROM registry.models m WHERE m.id = \(id)",
            logger: logger
        )
        guard var model = try await decodeModels(rows).first?.1 else { return nil }
        model.versions = try await versions(of: id)
        return model
    }

    func listModels(task: ModelTask?, label: String?, status: VersionStatus?, search: String?, limit: Int, after: Int64) async throws -> Page<Model> {
        // The search is a substring of the name; % and _ in it are literal.
        let pattern = search.map {
            "%"
                + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(
                    of: "_", with: "\\_") + "%"
        }
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.modelColumns) FROM registry.models m
            WHERE m.seq > \(after)
              AND (\(task?.rawValue)::text IS NULL OR m.task = \(task?.rawValue))
              AND (\(label)::text IS NULL OR \(label) = ANY (m.labels))
              AND (\(pattern)::text IS NULL OR m.name ILIKE \(pattern))
              AND (\(status?.rawValue)::text IS NULL OR EXISTS (
                    SELECT 1 FROM registry.model_versions v WHERE v.model_id = m.id AND v.status = \(status?.rawValue)))
            ORDER BY m.seq
            LIMIT \(limit + 1)
            """,
            logger: logger
        )
        return page(try await decodeModels(rows), limit: limit)
    }

    func updateModel(id: UUID, _ update: ModelUpdate) async throws -> Model? {
        let rows = try await client.query(
            """
            UPDATE registry.models
            SET description = coalesce(\(update.description), description),
                labels = coalesce(\(update.labels)::text[], labels),
                updated_at = now()
            WHERE id = \(id)
            RETURNING id
            """,
            logger: logger
        )
        guard try await rows.decode(UUID.self).first(where: { _ in true }) != nil else { return nil }
        return try await model(id: id)
    }

    /// Deletes a model that has no versions, in one statement, so a version added meanwhile is
    /// never deleted with it.
    func deleteModel(id: UUID) async throws -> ModelDeletion {
        let rows = try await client.query(
            """
            DELETE FROM registry.models m WHERE m.id = \(id)
              AND NOT EXISTS (SELECT 1 FROM registry.model_versions v WHERE v.model_id = m.id)
            RETURNING m.id
            """,
            logger: logger
        )
        if try await rows.decode(UUID.self).first(where: { _ in true }) != nil { return .deleted }
        let versions = try await self.versions(of: id)
        return versions.isEmpty ? .notFound : .hasVersions(versions.map(\.version))
    }

    // MARK: Versions

    private static let versionColumns =
        "v.model_id, v.version, v.artifact_uri, v.sha256, v.size_bytes, v.inputs::text, v.outputs::text, v.default_settings::text, v.status, v.created_at"

    private func decodeVersions(_ rows: PostgresRowSequence) async throws -> [ModelVersion] {
        var versions: [ModelVersion] = []
        for try await (modelID, version, uri, sha256, size, inputs, outputs, settings, status, createdAt) in rows.decode(
            (UUID, String, String, String, Int64, String, String, String, String, Date).self
        ) {
            versions.append(
                ModelVersion(
                    modelID: modelID, version: version, artifactURI: uri, sha256: sha256, sizeBytes: size,
                    inputs: try decodeJSON(JSONValue.self, inputs), outputs: try decodeJSON(JSONValue.self, outputs),
                    defaultSettings: try decodeJSON([String: JSONValue].self, settings),
                    status: VersionStatus(rawValue: status) ?? .active, createdAt: createdAt
                )
            )
        }
        return versions
    }

    func versions(of modelID: UUID) async throws -> [ModelVersion] {
        try await decodeVersions(
            client.query(
                "SELECT \(unescaped: Self.versionColumns) FROM registry.model_versions v WHERE v.model_id = \(modelID) ORDER BY v.created_at, v.version",
                logger: logger
            )
        )
    }

    func version(modelID: UUID, version: String) async throws -> ModelVersion? {
        try await decodeVersions(
            client.query(
                "SELECT \(unescaped: Self.versionColumns) FROM registry.model_versions v WHERE v.model_id = \(modelID) AND v.version = \(version)",
                logger: logger
            )
        ).first
    }

    func version(modelName: String, version: String) async throws -> ModelVersion? {
        try await decodeVersions(
            client.query(
                """
                SELECT \(unescaped: Self.versionColumns) FROM registry.model_versions v JOIN registry.models m ON m.id = v.model_id
                WHERE m.name = \(modelName) AND v.version = \(version)
                """,
                logger: logger
            )
        ).first
    }

    func addVersion(modelID: UUID, _ new: NewModelVersion) async throws -> ModelVersion? {
        do {
            let rows = try await client.query(
                """
                INSERT INTO registry.model_versions (model_id, version, artifact_uri, sha256, size_bytes, inputs, outputs, default_settings)
                SELECT \(modelID), \(new.version), \(new.artifactURI), \(new.sha256), \(new.sizeBytes),
                       \(try json(new.inputs ?? .object([:])))::jsonb, \(try json(new.outputs ?? .object([:])))::jsonb,
                       \(try json(new.defaultSettings ?? [:]))::jsonb
                WHERE EXISTS (SELECT 1 FROM registry.models WHERE id = \(modelID))
                RETURNING model_id
                """,
                logger: logger
            )
            guard try await rows.decode(UUID.self).first(where: { _ in true }) != nil else { return nil }
        } catch let error as PSQLError where error.isUniqueViolation {
            throw DomainError.conflict("version \(new.version) exists already", field: "version")
        }
        try await client.query("UPDATE registry.models SET updated_at = now() WHERE id = \(modelID)", logger: logger)
        return try await version(modelID: modelID, version: new.version)
    }

    func setStatus(modelID: UUID, version: String, _ status: VersionStatus) async throws -> ModelVersion? {
        try await client.query(
            "UPDATE registry.model_versions SET status = \(status.rawValue) WHERE model_id = \(modelID) AND version = \(version)",
            logger: logger
        )
        return try await self.version(modelID: modelID, version: version)
    }

    func deleteVersion(modelID: UUID, version: String) async throws -> Bool {
        let rows = try await client.query(
            "DELETE FROM registry.model_versions WHERE model_id = \(modelID) AND version = \(version) RETURNING model_id",
            logger: logger
        )
        return try await rows.decode(UUID.self).first(where: { _ in true }) != nil
    }

    // MARK: Inventory

    /// Every site with its online state and counts. One pass over servers and devices, grouped
    /// by site: a subquery per server (1,000 of them) took 25–110 ms a call while a fleet
    /// connected (`scripts/bench-gateway` polls this list every 50 ms).
    func sites() async throws -> [Site] {
        try await siteSummaries(client.query("\(unescaped: Self.siteSummaryQuery) ORDER BY s.id", logger: logger))
    }

    /// One site, the same figures; the site's id narrows both groupings.
    func site(id: String) async throws -> Site? {
        try await siteSummaries(client.query("\(unescaped: Self.siteSummaryQuery) WHERE s.id = \(id)", logger: logger)).first
    }

    /// A site's devices are those of its servers (a device moves with its server), not gone.
    private static let siteSummaryQuery = """
        SELECT s.id, s.name, coalesce(v.online, false), coalesce(v.servers, 0)::bigint, coalesce(d.devices, 0)::bigint
        FROM registry.sites s
        LEFT JOIN (SELECT site_id, bool_or(online) AS online, count(*) AS servers FROM registry.servers GROUP BY site_id) v
               ON v.site_id = s.id
        LEFT JOIN (SELECT v.site_id, count(*) AS devices FROM registry.devices d JOIN registry.servers v ON v.id = d.server_id
                   WHERE NOT d.gone GROUP BY v.site_id) d
               ON d.site_id = s.id
        """

    private func siteSummaries(_ rows: PostgresRowSequence) async throws -> [Site] {
        var sites: [Site] = []
        for try await (id, name, online, servers, devices) in rows.decode((String, String, Bool, Int64, Int64).self) {
            sites.append(Site(id: id, name: name, online: online, serverCount: Int(servers), deviceCount: Int(devices)))
        }
        return sites
    }

    func createSite(id: String, name: String) async throws -> Site {
        do {
            try await client.query("INSERT INTO registry.sites (id, name) VALUES (\(id), \(name))", logger: logger)
        } catch let error as PSQLError where error.isUniqueViolation {
            throw DomainError.conflict("site '\(id)' exists already", field: "id")
        }
        return try await site(id: id)!
    }

    private static let serverColumns =
        "v.id, v.site_id, v.name, v.agent_version, v.cpu_cores, v.memory_bytes, v.gpus::text, v.supports_pipelines, v.online, v.last_seen"

    private func decodeServers(_ rows: PostgresRowSequence) async throws -> [Server] {
        var servers: [Server] = []
        for try await (id, site, name, agentVersion, cpu, memory, gpus, pipelines, online, lastSeen) in rows.decode(
            (String, String, String, String, Double, Int64, String, Bool, Bool, Date?).self
        ) {
            servers.append(
                Server(
                    id: id, siteID: site, name: name, agentVersion: agentVersion, cpuCores: cpu, memoryBytes: memory,
                    gpus: try decodeJSON([AgentHello.GPU].self, gpus), supportsPipelines: pipelines, online: online, lastSeen: lastSeen
                )
            )
        }
        return servers
    }

    func servers(site: String?, online: Bool?) async throws -> [Server] {
        try await decodeServers(
            client.query(
                """
                SELECT \(unescaped: Self.serverColumns) FROM registry.servers v
                WHERE (\(site)::text IS NULL OR v.site_id = \(site)) AND (\(online)::bool IS NULL OR v.online = \(online))
                ORDER BY v.id
                """,
                logger: logger
            )
        )
    }

    func server(id: String) async throws -> Server? {
        try await decodeServers(
            client.query("SELECT \(unescaped: Self.serverColumns) FROM registry.servers v WHERE v.id = \(id)", logger: logger)
        ).first
    }

    func groups(site: String) async throws -> [DeviceGroup] {
        let rows = try await client.query(
            "SELECT id, site_id, name FROM registry.device_groups WHERE site_id = \(site) ORDER BY name", logger: logger)
        var groups: [DeviceGroup] = []
        for try await (id, siteID, name) in rows.decode((UUID, String, String).self) {
            groups.append(DeviceGroup(id: id, siteID: siteID, name: name))
        }
        return groups
    }

    func createGroup(site: String, name: String) async throws -> DeviceGroup {
        let id = UUID()
        do {
            try await client.query("INSERT INTO registry.device_groups (id, site_id, name) VALUES (\(id), \(site), \(name))", logger: logger)
        } catch let error as PSQLError where error.isUniqueViolation {
            throw DomainError.conflict("site '\(site)' has a group named '\(name)' already", field: "name")
        }
        return DeviceGroup(id: id, siteID: site, name: name)
    }

    func deleteGroup(site: String, id: UUID) async throws -> Bool {
        let rows = try await client.query(
            "DELETE FROM registry.device_groups WHERE id = \(id) AND site_id = \(site) RETURNING id",
            logger: logger
        )
        return try await rows.decode(UUID.self).first(where: { _ in true }) != nil
    }

    fileprivate static let deviceColumns = """
        d.seq, d.id, d.server_id, d.site_id, d.key, d.name, d.kind, d.enabled, d.gone, d.group_id, d.labels, v.online, v.supports_pipelines
        """

    /// A device row as ``deviceColumns`` lists it.
    fileprivate typealias DeviceRow = (Int64, UUID, String, String, String, String, String, Bool, Bool, UUID?, [String], Bool, Bool)

    fileprivate static func device(_ row: DeviceRow) -> (Int64, Device) {
        let (seq, id, server, site, key, name, kind, enabled, gone, group, labels, online, pipelines) = row
        return (
            seq,
            Device(
                id: id, serverID: server, siteID: site, key: key, name: name, kind: kind, enabled: enabled, gone: gone, groupID: group,
                labels: labels, reachable: online && !gone, supportsPipelines: pipelines
            )
        )
    }

    private func decodeDevices(_ rows: PostgresRowSequence) async throws -> [(Int64, Device)] {
        var devices: [(Int64, Device)] = []
        for try await row in rows.decode(DeviceRow.self) {
            devices.append(Self.device(row))
        }
        return devices
    }

    func devices(_ selection: DeviceSelection, limit: Int, after: Int64) async throws -> Page<Device> {
        page(try await deviceRows(selection, limit: limit + 1, after: after), limit: limit)
    }

    /// Every device the selection matches, for the MQTT query (which answers all of them).
    func allDevices(_ selection: DeviceSelection) async throws -> [Device] {
        var devices: [Device] = []
        var after: Int64 = 0
        while true {
            let rows = try await deviceRows(selection, limit: 1_000, after: after)
            devices += rows.map(\.1)
            guard rows.count == 1_000, let last = rows.last else { return devices }
            after = last.0
        }
    }

    /// Up to `limit` devices after position `after`, with their positions.
    private func deviceRows(_ selection: DeviceSelection, limit: Int, after: Int64) async throws -> [(Int64, Device)] {
        // The site page's list, the registry's hottest read: a prepared statement on its index.
        if let site = selection.siteIDs?.first, selection.siteIDs?.count == 1, selection.isOnlySites {
            var devices: [(Int64, Device)] = []
            for try await row in try await client.execute(SiteDevicePage(site: site, after: after, limit: limit), logger: logger) {
                devices.append(Self.device(row))
            }
            return devices
        }
        let site = selection.siteIDs?.count == 1 ? selection.siteIDs?.first : nil
        let sites = selection.siteIDs?.count == 1 ? nil : selection.siteIDs
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.deviceColumns)
            FROM registry.devices d JOIN registry.servers v ON v.id = d.server_id
            WHERE d.seq > \(after)
              AND (\(site)::text IS NULL OR d.site_id = \(site))
              AND (\(sites)::text[] IS NULL OR d.site_id = ANY (\(sites)::text[]))
              AND (\(selection.serverIDs)::text[] IS NULL OR d.server_id = ANY (\(selection.serverIDs)::text[]))
              AND (\(selection.groupIDs)::uuid[] IS NULL OR d.group_id = ANY (\(selection.groupIDs)::uuid[]))
              AND (\(selection.deviceIDs)::uuid[] IS NULL OR d.id = ANY (\(selection.deviceIDs)::uuid[]))
              AND (\(selection.labels)::text[] IS NULL OR d.labels @> \(selection.labels)::text[])
              AND (\(selection.enabled)::bool IS NULL OR d.enabled = \(selection.enabled))
              AND (\(selection.online)::bool IS NULL OR (v.online AND NOT d.gone) = \(selection.online))
            ORDER BY d.seq
            LIMIT \(limit)
            """,
            logger: logger
        )
        return try await decodeDevices(rows)
    }

    func device(id: UUID) async throws -> Device? {
        for try await row in try await client.execute(DeviceByID(id: id), logger: logger) {
            return Self.device(row).1
        }
        return nil
    }

    func updateDevice(id: UUID, _ update: DeviceUpdate) async throws -> Device? {
        guard let current = try await device(id: id) else { return nil }
        var groupID = current.groupID
        if case .some(let newGroup) = update.groupID {
            if let newGroup {
                let groups = try await self.groups(site: current.siteID)
                guard groups.contains(where: { $0.id == newGroup }) else {
                    throw DomainError.unknownReference("no group \(newGroup.lowercasedString) in site '\(current.siteID)'", field: "group_id")
                }
            }
            groupID = newGroup
        }
        try await client.query(
            """
            UPDATE registry.devices
            SET name = coalesce(\(update.name), name),
                enabled = coalesce(\(update.enabled), enabled),
                labels = coalesce(\(update.labels)::text[], labels),
                group_id = \(groupID),
                updated_at = now()
            WHERE id = \(id)
            """,
            logger: logger
        )
        return try await device(id: id)
    }

    private func page<Item>(_ rows: [(Int64, Item)], limit: Int) -> Page<Item> {
        let items = Array(rows.prefix(limit))
        let next = rows.count > limit ? items.last.map { Cursor.encode($0.0) } : nil
        return Page(items: items.map(\.1), nextCursor: next)
    }
}

extension PSQLError {
    var isUniqueViolation: Bool { serverInfo?[.sqlState] == "23505" }
}

// MARK: Prepared statements

// PostgreSQL parses and plans these once per connection instead of once per request: under load
// the planning of the registry's two hottest reads cost as much as running them.

/// One device by id (`GET /v1/devices/{id}`).
private struct DeviceByID: PostgresPreparedStatement {
    static let sql = """
        SELECT \(PostgresRegistryRepository.deviceColumns) FROM registry.devices d JOIN registry.servers v ON v.id = d.server_id WHERE d.id = $1
        """
    typealias Row = PostgresRegistryRepository.DeviceRow

    var id: UUID

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A page of one site's devices, in `seq` order (index `devices_site_seq`).
private struct SiteDevicePage: PostgresPreparedStatement {
    static let sql = """
        SELECT \(PostgresRegistryRepository.deviceColumns) FROM registry.devices d JOIN registry.servers v ON v.id = d.server_id
        WHERE d.site_id = $1 AND d.seq > $2 ORDER BY d.seq LIMIT $3
        """
    typealias Row = PostgresRegistryRepository.DeviceRow

    var site: String
    var after: Int64
    var limit: Int

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(site)
        bindings.append(after)
        bindings.append(limit)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
