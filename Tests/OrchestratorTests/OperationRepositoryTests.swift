import DeviceProtocol
import FleetContract
import Foundation
import PostgresNIO
import ServiceRuntime
import TestSupport
import Testing

@testable import Orchestrator

/// The operation repository's promises, held for PostgreSQL and for the in-memory one the
/// handlers' tests use, so that what those tests see is what the service does.
@Suite("Operation repository, PostgreSQL and in memory")
struct OperationRepositoryTests {
    enum Kind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case postgres, memory
        var testDescription: String { rawValue }
    }

    private func withRepository(_ kind: Kind, _ body: @escaping @Sendable (any OperationRepository) async throws -> Void) async throws {
        switch kind {
        case .memory:
            try await body(InMemoryOperationRepository())
        case .postgres:
            try await withNewDatabase { client in
                let logger = testLogger("repository")
                _ = try await MigrationRunner(schema: DatabaseSchema(name: "orchestrator", migrations: OrchestratorMigrations.all), logger: logger)
                    .migrate(on: client)
                try await body(PostgresOperationStore(client: client, logger: logger))
            }
        }
    }

    static func device(_ key: String, server: String, site: String) -> RegistryDevice {
        RegistryDevice(
            id: UUID(), serverID: server, siteID: site, key: key, name: key.uppercased(), enabled: true, gone: false, groupID: nil, labels: [],
            reachable: true, supportsPipelines: true)
    }

    static func pipeline(_ name: String) -> DesiredState.Pipeline {
        let stage = DesiredState.Stage(
            modelID: UUID(), modelName: "people", version: "1.0.0", artifactURI: "https://models.example/p.onnx",
            sha256: String(repeating: "a", count: 64), settings: ["threshold": .number(0.5)], preProcessors: [], postProcessors: [])
        return DesiredState.Pipeline(id: UUID().uuidString.lowercased(), name: name, stages: [stage])
    }

    static func operation(_ changes: [DeviceChange], revisions: [UUID: Int] = [:]) -> NewOperation {
        NewOperation(
            kind: .assign, actor: "local", request: #"{"kind": "assign"}"#, reverts: nil, retries: nil, watchdogSeconds: 60, changes: changes,
            revisions: revisions)
    }

    @Test(
        "an operation commits each device's next revision, its agents' next generations, every device pending; reads give it back",
        arguments: Kind.allCases)
    func commitAndRead(_ kind: Kind) async throws {
        try await withRepository(kind) { repository in
            let (b, a, c) = (
                Self.device("cam-b", server: "edge-01", site: "north"), Self.device("cam-a", server: "edge-01", site: "north"),
                Self.device("cam-c", server: "edge-02", site: "south")
            )
            let (people, cars) = (Self.pipeline("people"), Self.pipeline("cars"))
            let first = Self.operation([b, a, c].map { DeviceChange(device: $0, before: [], after: [people]) })
            let (generations, summary) = try await repository.apply(first)
            #expect(generations == ["edge-01": 1, "edge-02": 1])
            #expect(summary.id == first.id && summary.devices == 3 && summary.counts["pending"] == 3 && !summary.finished)

            let current = try await repository.currentPipelines([a.id, b.id, c.id, UUID()])
            #expect(current.count == 3 && current.values.allSatisfy { $0.revision == 1 && $0.pipelines == [people] })

            let second = Self.operation([DeviceChange(device: b, before: [people], after: [people, cars])], revisions: [b.id: 1])
            #expect(try await repository.apply(second).generations == ["edge-01": 2])
            #expect(try await repository.currentPipelines([b.id])[b.id]?.revision == 2)
            let history = try await repository.history(of: b.id)
            #expect(history.map(\.revision) == [2, 1] && history.map(\.operationID) == [second.id, first.id])
            #expect(history.first?.pipelines == [people, cars])

            let devices = try await repository.devices(of: first.id, status: nil)
            #expect(devices.map(\.deviceName) == ["CAM-A", "CAM-B", "CAM-C"] && devices.map(\.generation) == [1, 1, 1])
            #expect(try await repository.devices(of: first.id, status: .pending).count == 3)
            #expect(try await repository.devices(of: first.id, status: .applied).isEmpty)
            let changes = try await repository.changes(of: second.id)
            #expect(changes == [OperationChange(deviceID: b.id, status: .pending, before: [people], after: [people, cars])])

            let newest = try await repository.operations(limit: 1, before: nil)
            #expect(newest.items.map(\.id) == [second.id] && newest.next != nil)
            let older = try await repository.operations(limit: 1, before: newest.next)
            #expect(older.items.map(\.id) == [first.id] && older.next == nil)
            #expect(try await repository.operation(first.id)?.counts["pending"] == 3)
            #expect(try await repository.operation(UUID()) == nil)
        }
    }

    @Test("a device changed since the plan refuses the whole operation as changed_meanwhile, and nothing of it is kept", arguments: Kind.allCases)
    func changedMeanwhile(_ kind: Kind) async throws {
        try await withRepository(kind) { repository in
            let (a, c) = (Self.device("cam-a", server: "edge-01", site: "north"), Self.device("cam-c", server: "edge-02", site: "south"))
            let people = Self.pipeline("people")
            try await repository.apply(Self.operation([DeviceChange(device: a, before: [], after: [people])]))

            // Planned when cam-a had never been assigned.
            let stale = Self.operation([a, c].map { DeviceChange(device: $0, before: [], after: [Self.pipeline("cars")]) })
            await #expect(throws: DomainError.changedMeanwhile(a.id)) { try await repository.apply(stale) }
            #expect(try await repository.operation(stale.id) == nil)
            let current = try await repository.currentPipelines([a.id, c.id])
            #expect(current[a.id]?.revision == 1 && current[a.id]?.pipelines == [people] && current[c.id] == nil)
        }
    }
}
