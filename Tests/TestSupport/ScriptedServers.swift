import ChildProcesses
package import Foundation

/// Runs one of the project's scripts and returns its last line of output; throws with its output
/// when it fails.
package func runScript(_ script: String, _ arguments: [String], environment extra: [String: String] = [:]) async throws -> String {
    let environment = try TestEnvironment.current()
    let outputURL = environment.scratch.appendingPathComponent("script-\(UUID().uuidString).log")
    defer { try? FileManager.default.removeItem(at: outputURL) }
    let process = try ChildProcess(
        executable: environment.repository.appendingPathComponent("scripts/\(script)").path,
        arguments: arguments,
        environment: ProcessInfo.processInfo.environment.merging(extra) { $1 },
        outputFile: outputURL
    )
    let status = await process.waitForExit(timeout: .seconds(60))
    let text = process.output
    guard status == 0 else {
        throw ScriptFailure(script: script, status: status ?? -1, output: text)
    }
    return text.split(separator: "\n").last.map(String.init) ?? ""
}

package struct ScriptFailure: Error, CustomStringConvertible {
    var script: String
    var status: Int32
    var output: String
    package var description: String { "scripts/\(script) exited \(status):\n\(output)" }
}

/// A private Mosquitto for a test that stops and restarts its broker, started by
/// `scripts/mosquitto-instance` like the shared one. Stop it at the end of the test (`scripts/test`
/// stops whatever is left in its scratch folder).
package final class PrivateBroker: Sendable {
    package let directory: URL
    package let port: Int
    package var url: String { "\(tls ? "mqtts" : "mqtt")://127.0.0.1:\(port)" }

    /// TLS with client certificates required; the test CA and certificates are in ``tlsDirectory``.
    package let tls: Bool
    package var tlsDirectory: URL { directory.appendingPathComponent("tls") }

    private init(directory: URL, port: Int, tls: Bool) {
        self.directory = directory
        self.port = port
        self.tls = tls
    }

    package static func start(tls: Bool = false) async throws -> PrivateBroker {
        try await startingOnFreePort { port in
            let broker = PrivateBroker(directory: try TestEnvironment.current().makeScratchDirectory("mosquitto"), port: port, tls: tls)
            try await broker.start()
            return broker
        }
    }

    package func start() async throws {
        _ = try await runScript(
            "mosquitto-instance", ["start", directory.path, "\(port)"], environment: ["MODELFLEET_MOSQUITTO_TLS": tls ? "1" : "0"])
    }
    package func stop() async throws { _ = try await runScript("mosquitto-instance", ["stop", directory.path]) }
}

/// A private PostgreSQL cluster for a test that stops and restarts its database, started by
/// `scripts/postgres-instance` like the shared one.
package final class PrivateDatabase: Sendable {
    package let directory: URL
    package let port: Int
    package let url: String

    private init(directory: URL, port: Int) {
        self.directory = directory
        self.port = port
        self.url = "postgres://modelfleet@127.0.0.1:\(port)/modelfleet"
    }

    package static func start() async throws -> PrivateDatabase {
        try await startingOnFreePort { port in
            let directory = try TestEnvironment.current().makeScratchDirectory("postgres").appendingPathComponent("data")
            let database = PrivateDatabase(directory: directory, port: port)
            try await database.start()
            return database
        }
    }

    package func start() async throws {
        _ = try await runScript("postgres-instance", ["start", directory.path, "\(port)"], environment: ["MODELFLEET_PG_NO_FSYNC": "1"])
    }

    package func stop() async throws { _ = try await runScript("postgres-instance", ["stop", directory.path]) }

    /// Immediate shutdown: open transactions are cut off, as when the server crashes.
    package func crash() async throws { _ = try await runScript("postgres-instance", ["crash", directory.path]) }
}

/// Starts a server on a free port, and on another one when something else bound that port
/// between ``freePort()``'s check and the server's own bind (a fresh-clone CI run saw a private
/// broker fail so): at most three attempts.
private func startingOnFreePort<Server>(_ start: (Int) async throws -> Server) async throws -> Server {
    var attempt = 1
    while true {
        do {
            return try await start(try freePort())
        } catch let failure as ScriptFailure where attempt < 3 && failure.output.contains("ddress already in use") {
            attempt += 1
        }
    }
}

/// Runs `body` with a private broker that is stopped afterwards, whatever happens.
package func withPrivateBroker<T: Sendable>(tls: Bool = false, _ body: (PrivateBroker) async throws -> T) async throws -> T {
    let broker = try await PrivateBroker.start(tls: tls)
    do {
        let result = try await body(broker)
        try await broker.stop()
        return result
    } catch {
        try? await broker.stop()
        throw error
    }
}

/// Runs `body` with a private PostgreSQL cluster that is stopped afterwards, whatever happens.
package func withPrivateDatabase<T: Sendable>(_ body: (PrivateDatabase) async throws -> T) async throws -> T {
    let database = try await PrivateDatabase.start()
    do {
        let result = try await body(database)
        try await database.stop()
        return result
    } catch {
        try? await database.stop()
        throw error
    }
}
