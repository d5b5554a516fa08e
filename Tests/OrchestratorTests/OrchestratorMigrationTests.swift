import FleetContract
import Foundation
import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import DeviceProtocol
@testable import Orchestrator
@testable import ServiceRuntime

/// The orchestrator's migrations over data written by earlier versions, each test in its own
/// database of the PostgreSQL that `scripts/test` starts (the schema name is fixed).
@Suite("Orchestrator migrations against PostgreSQL")
struct OrchestratorMigrationTests {
    @Test("migration 4 moves each operation's before and after lists to one row per distinct list; revert reads them back")
    func operationListsMoved() async throws {
        try await withNewDatabase { client in
            let logger = testLogger("migration")
            let before4 = try MigrationRunner(
                schema: DatabaseSchema(name: "orchestrator", migrations: OrchestratorMigrations.all.filter { $0.version < 4 }), logger: logger)
            #expect(try await before4.migrate(on: client) == [1, 2, 3])

            // An operation of the previous version: three devices, two of which shared their lists.
            let operation = UUID()
            let (empty, one, two) = ("[]", #"[{"id":"p1","name":"people","stages":[]}]"#, #"[{"id":"p2","name":"cars","stages":[]}]"#)
            let devices = [(UUID(), empty, one), (UUID(), empty, one), (UUID(), one, two)]
            try await client.query(
                """
                INSERT INTO orchestrator.operations (id, kind, actor, request, watchdog_seconds)
                VALUES (\(operation), 'assign', 'local', '{}'::jsonb, 60)
                """)
            for (index, (device, before, after)) in devices.enumerated() {
                try await client.query(
                    """
                    INSERT INTO orchestrator.operation_devices
                        (operation_id, device_id, server_id, site_id, device_key, device_name, generation, status, before, after, reachable)
                    VALUES (\(operation), \(device), 'edge-1', 'plant-a', \("cam-\(index)"), \("Camera \(index)"), 1, 'applied',
                            \(before)::jsonb, \(after)::jsonb, true)
                    """)
            }

            let all = try MigrationRunner(schema: DatabaseSchema(name: "orchestrator", migrations: OrchestratorMigrations.all), logger: logger)
            #expect(try await all.migrate(on: client) == Array(4...OrchestratorMigrations.all.count))

            var lists = 0
            for try await count in try await client.query(
                "SELECT count(*)::int FROM orchestrator.operation_lists WHERE operation_id = \(operation)"
            ).decode(Int.self) {
                lists = count
            }
            #expect(lists == 3, "the distinct lists of the operation: [], people, cars")

            let changes = try await PostgresOperationStore(client: client, logger: logger).changes(of: operation)
            let decoded = { (text: String) in try ContractCoding.decoder.decode([DesiredState.Pipeline].self, from: Data(text.utf8)) }
            #expect(changes.count == devices.count)
            for (device, before, after) in devices {
                let change = try #require(changes.first { $0.deviceID == device })
                let (expectedBefore, expectedAfter) = (try decoded(before), try decoded(after))
                #expect(change.before == expectedBefore && change.after == expectedAfter, "\(device)")
                #expect(change.status == .applied)
            }
        }
    }
}
