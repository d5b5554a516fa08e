package import Logging
import Metrics
package import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Migrates a service's schema at start, then watches that the database answers, for `/ready`.
///
/// A database that is not up yet is waited for (with backoff), like the broker; a migration that
/// cannot be applied (edited, failing SQL) stops the service, since running on a wrong schema
/// would be worse.
package final class DatabaseService: Service, Sendable {
    package enum Status: Sendable, Equatable, CustomStringConvertible {
        case migrating(lastError: String?)
        case reachable
        case unreachable(String)

        package var description: String {
            switch self {
            case .migrating(nil): "migrating"
            case .migrating(let error?): "waiting for the database: \(error)"
            case .reachable: "reachable"
            case .unreachable(let error): "unreachable: \(error)"
            }
        }
    }

    package let client: PostgresClient
    private let runner: MigrationRunner
    private let logger: Logger
    private let probeInterval: Duration
    private let state = Mutex(Status.migrating(lastError: nil))

    /// Who waits for the migrations, and how they ended (nil while they run).
    private struct MigrationWait {
        var outcome: Result<Void, any Error>?
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        var nextToken = 0
    }

    private let migration = Mutex(MigrationWait())

    package init(client: PostgresClient, schema: DatabaseSchema, logger: Logger, probeInterval: Duration = .seconds(1)) throws {
        self.client = client
        self.runner = try MigrationRunner(schema: schema, logger: logger)
        self.logger = logger
        self.probeInterval = probeInterval
    }

    package var status: Status { state.withLock { $0 } }

    package func run() async throws {
        do {
            try await migrateWhenReachable()
            finishMigration(.success(()))
        } catch {
            // Waiters must not hang on a service that is going down.
            finishMigration(.failure(error))
            throw error
        }
        // Graceful shutdown cancels the probing, so that a sleep between probes does not delay it.
        await cancelWhenGracefulShutdown { await self.probeUntilShutdown() }
    }

    private func finishMigration(_ outcome: Result<Void, any Error>) {
        let waiters = migration.withLock { wait in
            wait.outcome = outcome
            defer { wait.waiters = [:] }
            return Array(wait.waiters.values)
        }
        for waiter in waiters { waiter.resume(with: outcome) }
    }

    /// Returns once the schema is migrated, for services whose work needs their tables; throws
    /// if the migrations failed or the waiting task is cancelled.
    package func waitUntilMigrated() async throws {
        let token = migration.withLock { wait in
            wait.nextToken += 1
            return wait.nextToken
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: Result<Void, any Error>? = migration.withLock { wait in
                    if let outcome = wait.outcome { return outcome }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    wait.waiters[token] = continuation
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            migration.withLock { $0.waiters.removeValue(forKey: token) }?.resume(throwing: CancellationError())
        }
    }

    private func migrateWhenReachable() async throws {
        var attempt = 0
        while true {
            do {
                try await runner.migrate(on: client)
                state.withLock { $0 = .reachable }
                return
            } catch let error as MigrationError {
                logger.critical("cannot migrate the database schema", metadata: ["error": "\(error)"])
                throw error
            } catch let error as PSQLError where error.serverInfo != nil {
                // The server ran the SQL and refused it: a broken migration, not an outage.
                logger.critical("a migration failed", metadata: ["error": "\(String(reflecting: error))"])
                throw error
            } catch {
                try Task.checkCancellation()
                let reason = Self.describe(error)
                state.withLock { $0 = .migrating(lastError: reason) }
                let delay = min(Duration.milliseconds(200) * (1 << min(attempt, 5)), .seconds(5))
                if attempt == 0 || attempt % 10 == 0 {
                    logger.warning("database not reachable yet; retrying", metadata: ["error": "\(reason)", "retry_in": "\(delay)"])
                }
                attempt += 1
                try await Task.sleep(for: delay)
            }
        }
    }

    private func probeUntilShutdown() async {
        let gauge = Gauge(label: "database_reachable")
        while !Task.isCancelled {
            let next: Status
            do {
                // Abandoned, not awaited, when late: a query on a connection that never answers
                // would otherwise stop the probe with /ready frozen at its last answer.
                try await withAbandonedDeadline(.seconds(1), onTimeout: DeadlineExceeded()) {
                    _ = try await self.client.query("SELECT 1")
                }
                next = .reachable
            } catch {
                next = .unreachable(Self.describe(error))
            }
            let previous = state.withLock { state in
                defer { state = next }
                return state
            }
            gauge.record(next == .reachable ? 1 : 0)
            if previous != next {
                if next == .reachable {
                    logger.notice("database reachable again")
                } else {
                    logger.warning("database unreachable", metadata: ["error": "\(next)"])
                }
            }
            try? await Task.sleep(for: probeInterval)
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            return "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }
}

/// The database probe got no answer in time.
struct DeadlineExceeded: Error, CustomStringConvertible {
    var description: String { "timed out" }
}
