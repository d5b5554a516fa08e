import FleetContract
import Foundation
import PostgresNIO
import ServiceRuntime
import TestSupport
import Testing

@testable import Registry

/// The registry repository's promises, held for PostgreSQL and for the in-memory one the
/// handlers' tests use, so that what those tests see is what the service does. (Servers and
/// devices come from hellos, which each side takes its own way; `RegistryProcessTests` covers them.)
@Suite("Registry repository, PostgreSQL and in memory")
struct RegistryRepositoryTests {
    enum Kind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case postgres, memory
        var testDescription: String { rawValue }
    }

    private func withRepository(_ kind: Kind, _ body: @escaping @Sendable (any RegistryRepository) async throws -> Void) async throws {
        switch kind {
        case .memory:
            try await body(InMemoryRegistryRepository())
        case .postgres:
            try await withNewDatabase { client in
                let logger = testLogger("repository")
                _ = try await MigrationRunner(schema: DatabaseSchema(name: "registry", migrations: RegistryMigrations.all), logger: logger)
                    .migrate(on: client)
                try await body(PostgresRegistryRepository(client: client, logger: logger))
            }
        }
    }

    private static func model(_ name: String, _ task: ModelTask = .objectDetection, labels: [String]? = nil) -> NewModel {
        NewModel(name: name, description: nil, task: task, format: .onnx, labels: labels)
    }

    private static func version(_ version: String) -> NewModelVersion {
        NewModelVersion(
            version: version, artifactURI: "https://models.example/\(version).onnx", sha256: String(repeating: "d", count: 64), sizeBytes: 10,
            inputs: nil, outputs: nil, defaultSettings: ["confidence_threshold": .number(0.4)])
    }

    @Test("models: a name once, filters by task, label, version status and a literal part of the name, pages in order", arguments: Kind.allCases)
    func models(_ kind: Kind) async throws {
        try await withRepository(kind) { repository in
            let people = try await repository.createModel(Self.model("People_Counter", labels: ["gate"]))
            let cars = try await repository.createModel(Self.model("cars", .classification))
            let plates = try await repository.createModel(Self.model("plates%ocr", .ocr, labels: ["gate"]))
            await #expect(throws: DomainError.conflict("a model named 'cars' exists already", field: "name")) {
                try await repository.createModel(Self.model("cars"))
            }
            func names(task: ModelTask? = nil, label: String? = nil, status: VersionStatus? = nil, search: String? = nil) async throws -> [String] {
                try await repository.listModels(task: task, label: label, status: status, search: search, limit: 10, after: 0).items.map(\.name)
            }
            #expect(try await names() == ["People_Counter", "cars", "plates%ocr"])
            #expect(try await names(task: .classification) == ["cars"])
            #expect(try await names(label: "gate") == ["People_Counter", "plates%ocr"])
            #expect(try await names(search: "people") == ["People_Counter"], "case-insensitive")
            #expect(try await names(search: "%") == ["plates%ocr"], "% is literal")
            #expect(try await names(search: "_") == ["People_Counter"], "_ is literal")

            let first = try await repository.listModels(task: nil, label: nil, status: nil, search: nil, limit: 2, after: 0)
            let cursor = try #require(first.nextCursor)
            let rest = try await repository.listModels(task: nil, label: nil, status: nil, search: nil, limit: 2, after: try Cursor.decode(cursor))
            #expect(first.items.map(\.id) == [people.id, cars.id] && rest.items.map(\.id) == [plates.id] && rest.nextCursor == nil)

            _ = try await repository.addVersion(modelID: cars.id, Self.version("1.0.0"))
            _ = try await repository.addVersion(modelID: cars.id, Self.version("1.1.0"))
            await #expect(throws: DomainError.conflict("version 1.0.0 exists already", field: "version")) {
                try await repository.addVersion(modelID: cars.id, Self.version("1.0.0"))
            }
            #expect(try await repository.addVersion(modelID: UUID(), Self.version("1.0.0")) == nil)
            #expect(try await repository.setStatus(modelID: cars.id, version: "1.0.0", .deprecated)?.status == .deprecated)
            #expect(try await names(status: .deprecated) == ["cars"])
            #expect(try await names(status: .active) == ["cars"])
            #expect(try await repository.version(modelName: "cars", version: "1.1.0")?.defaultSettings == ["confidence_threshold": .number(0.4)])
            #expect(try await repository.model(id: cars.id)?.versions?.map(\.version) == ["1.0.0", "1.1.0"])

            let updated = try await repository.updateModel(id: people.id, ModelUpdate(description: "at the gates", labels: ["gate", "night"]))
            #expect(updated?.description == "at the gates" && updated?.labels == ["gate", "night"])
            #expect(try await repository.updateModel(id: UUID(), ModelUpdate(description: "x", labels: nil)) == nil)

            #expect(try await repository.deleteModel(id: cars.id) == .hasVersions(["1.0.0", "1.1.0"]))
            #expect(try await repository.deleteVersion(modelID: cars.id, version: "1.0.0"))
            #expect(try await !repository.deleteVersion(modelID: cars.id, version: "1.0.0"))
            #expect(try await repository.deleteVersion(modelID: cars.id, version: "1.1.0"))
            #expect(try await repository.deleteModel(id: cars.id) == .deleted)
            #expect(try await repository.deleteModel(id: cars.id) == .notFound)
        }
    }

    @Test("sites and groups: an id and a group name once per site; groups by name; deleting needs the right site", arguments: Kind.allCases)
    func sitesAndGroups(_ kind: Kind) async throws {
        try await withRepository(kind) { repository in
            let north = try await repository.createSite(id: "north", name: "North yard")
            #expect(north.name == "North yard" && north.serverCount == 0 && !north.online)
            await #expect(throws: DomainError.conflict("site 'north' exists already", field: "id")) {
                try await repository.createSite(id: "north", name: "Again")
            }
            _ = try await repository.createSite(id: "south", name: "South")
            #expect(try await repository.sites().map(\.id) == ["north", "south"])
            #expect(try await repository.site(id: "east") == nil)

            let gates = try await repository.createGroup(site: "north", name: "gates")
            _ = try await repository.createGroup(site: "north", name: "docks")
            _ = try await repository.createGroup(site: "south", name: "gates")
            await #expect(throws: DomainError.conflict("site 'north' has a group named 'gates' already", field: "name")) {
                try await repository.createGroup(site: "north", name: "gates")
            }
            #expect(try await repository.groups(site: "north").map(\.name) == ["docks", "gates"])
            #expect(try await !repository.deleteGroup(site: "south", id: gates.id), "another site's group")
            #expect(try await repository.deleteGroup(site: "north", id: gates.id))
            #expect(try await repository.groups(site: "north").map(\.name) == ["docks"])
        }
    }
}
