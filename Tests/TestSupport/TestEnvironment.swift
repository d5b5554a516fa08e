package import Foundation
import Synchronization

/// What `scripts/test` hands the tests: the shared broker and database it started, where the
/// built executables are, and a scratch folder. Tests that need these fail with a message saying
/// to run `scripts/test` when they are missing, rather than pass without testing anything.
package struct TestEnvironment: Sendable {
    package var mqttURL: String
    package var databaseURL: String
    package var binDirectory: URL
    package var repository: URL
    package var scratch: URL
    /// The broker passwords every test broker shares (`scripts/mqtt_security.py`): one file per
    /// service (`registry`, …) and `admin`.
    package var mqttCredentials: URL
    /// The API keys' signing secret every service of the run shares (`scripts/test` makes it).
    package var apiSigningKey: URL
    /// The passwords of the services' PostgreSQL roles on every cluster of the run.
    package var pgCredentials: URL

    package struct Missing: Error, CustomStringConvertible {
        var variable: String
        package var description: String { "\(variable) is not set: run the tests with scripts/test, which starts the broker and database they use" }
    }

    package static func current() throws -> TestEnvironment {
        let environment = ProcessInfo.processInfo.environment
        func value(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else { throw Missing(variable: name) }
            return value
        }
        return TestEnvironment(
            mqttURL: try value("MODELFLEET_TEST_MQTT_URL"),
            databaseURL: try value("MODELFLEET_TEST_DATABASE_URL"),
            binDirectory: URL(fileURLWithPath: try value("MODELFLEET_BIN_DIR")),
            repository: URL(fileURLWithPath: try value("MODELFLEET_REPO")),
            scratch: URL(fileURLWithPath: try value("MODELFLEET_TEST_TMPDIR")),
            mqttCredentials: URL(fileURLWithPath: try value("MODELFLEET_MQTT_CREDENTIALS_DIR")),
            apiSigningKey: URL(fileURLWithPath: try value("MODELFLEET_API_SIGNING_KEY_FILE")),
            pgCredentials: URL(fileURLWithPath: try value("MODELFLEET_PG_CREDENTIALS_DIR"))
        )
    }

    /// The password of the broker account `name` (`admin`, or a service's name).
    package func mqttPassword(_ name: String) throws -> String {
        let text = try String(contentsOf: mqttCredentials.appendingPathComponent(name), encoding: .utf8)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A new folder under the scratch folder, readable by the `postgres` user.
    package func makeScratchDirectory(_ name: String) throws -> URL {
        let url = scratch.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        return url
    }
}

/// A name no other test uses, for topics, client ids and schemas, so that tests run in parallel.
package func uniqueName(_ prefix: String) -> String {
    "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
}

/// A TCP port on 127.0.0.1 that nothing listens on, for a service or broker a test starts.
///
/// Chosen below the kernel's ephemeral range: a port from that range (what binding port 0
/// gives) can be taken by any outgoing connection between this check and the service's own
/// bind, and the tests open thousands (simulated agents); a service then failed with "Address
/// already in use". Ports handed out in this process are not handed out again.
package func freePort() throws -> Int {
    let ephemeralStart =
        (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { text in text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
    let range = 20_000..<max(ephemeralStart, 20_001)
    for _ in 0..<200 {
        let port = Int.random(in: range)
        guard HandedOutPorts.shared.take(port) else { continue }
        if canBind(port) { return port }
    }
    throw POSIXError(.EADDRINUSE)
}

private final class HandedOutPorts: Sendable {
    static let shared = HandedOutPorts()
    private let ports = Mutex<Set<Int>>([])

    /// False when the port was handed out before.
    func take(_ port: Int) -> Bool { ports.withLock { $0.insert(port).inserted } }
}

/// Whether a listening socket could bind `port` on 127.0.0.1 now.
private func canBind(_ port: Int) -> Bool {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { return false }
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
package func eventually(
    timeout: Duration = .seconds(10), interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
