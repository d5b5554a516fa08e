package import ChildProcesses
package import Foundation
import Synchronization

/// A service executable from the build, started for a test with its own HTTP port.
package final class ServiceProcess: Sendable {
    package let name: String
    package let port: Int
    package let process: ChildProcess

    /// Starts `name` (e.g. `registry`) from `MODELFLEET_BIN_DIR` with the test broker and
    /// database unless `environment` says otherwise.
    package init(_ name: String, arguments: [String] = [], environment extra: [String: String] = [:]) throws {
        let environment = try TestEnvironment.current()
        self.name = name
        self.port = try freePort()
        var variables = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "MODELFLEET_MQTT_URL": environment.mqttURL,
            "MODELFLEET_DATABASE_URL": environment.databaseURL,
            "MODELFLEET_HTTP_PORT": "\(port)",
            "MODELFLEET_LOG_LEVEL": "info",
        ]
        // Each service connects with its own broker account (agents are enrolled by the tests),
        // and checks API keys signed with the run's secret.
        let account = environment.mqttCredentials.appendingPathComponent(name)
        if name != "edge-agent", FileManager.default.fileExists(atPath: account.path) {
            variables["MODELFLEET_MQTT_PASSWORD_FILE"] = account.path
            variables["MODELFLEET_API_SIGNING_KEY_FILE"] = environment.apiSigningKey.path
        }
        variables.merge(extra) { $1 }
        // A service that keeps data signs in to PostgreSQL as its own role (SCRAM), which owns
        // only its schema, as in the stack: scripts/postgres-instance made it on every cluster.
        if ["registry", "orchestrator"].contains(name), let url = variables["MODELFLEET_DATABASE_URL"], url.hasPrefix("postgres://modelfleet@") {
            variables["MODELFLEET_DATABASE_URL"] = url.replacingOccurrences(of: "postgres://modelfleet@", with: "postgres://modelfleet_\(name)@")
            variables["MODELFLEET_DATABASE_PASSWORD_FILE"] = environment.pgCredentials.appendingPathComponent(name).path
        }
        let output = environment.scratch.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8)).log")
        process = try ChildProcess(
            executable: environment.binDirectory.appendingPathComponent(name).path,
            arguments: arguments,
            environment: variables,
            outputFile: output
        )
    }

    /// GET `path` on the service.
    package func get(_ path: String) async throws -> HTTPResult {
        let result = try await httpRequest(port: port, method: "GET", path: path)
        ExchangeLog.shared.record(service: name, method: "GET", path: path, result)
        return result
    }

    /// `method` on `path` with a JSON body (a string, or anything JSONSerialization takes).
    package func send(_ method: String, _ path: String, json: Any? = nil) async throws -> HTTPResult {
        let body: Data? = try json.map { value in
            if let text = value as? String { return Data(text.utf8) }
            return try JSONSerialization.data(withJSONObject: value)
        }
        let result = try await httpRequest(port: port, method: method, path: path, body: body)
        ExchangeLog.shared.record(service: name, method: method, path: path, result)
        return result
    }

    /// Waits until `/health` answers; throws with the service's output if it does not.
    package func waitUntilAlive(timeout: Duration = .seconds(60)) async throws {
        let alive = await eventually(timeout: timeout) { (try? await get("/health").status) == 200 || !process.isRunning }
        guard alive, process.isRunning else {
            throw ServiceDidNotStart(name: name, output: process.output)
        }
    }

    /// Waits until `/ready` answers 200; throws with the service's output if it does not, or
    /// exits first.
    ///
    /// The default wait is long because how fast a service starts is not what a test checks: in
    /// the suite's busiest second, with every suite starting brokers, databases and services on
    /// two cores, a gateway (0.8 s longer than the others to start in a debug build, idle: it
    /// compiles the device protocol's schemas) once printed
    /// nothing at all within 20 s.
    package func waitUntilReady(timeout: Duration = .seconds(60)) async throws {
        let lastAnswer = Mutex("no answer")
        let ready = await eventually(timeout: timeout) {
            guard process.isRunning else { return true }
            let answer = try? await get("/ready")
            lastAnswer.withLock { $0 = answer.map { "\($0.status) \($0.body)" } ?? "no answer" }
            return answer?.status == 200
        }
        guard ready, process.isRunning else {
            throw ServiceDidNotStart(name: name, output: "its last /ready: \(lastAnswer.withLock { $0 })\n" + process.output)
        }
    }

    /// Starts `name` and waits until it is ready. Another process can bind the HTTP port between
    /// ``freePort()``'s check and the service's own bind (a suite's brokers and databases are
    /// started by scripts that pick theirs): then it is started again on another port, at most
    /// three times in all.
    package static func ready(_ name: String, arguments: [String] = [], environment: [String: String] = [:]) async throws -> ServiceProcess {
        var attempt = 1
        while true {
            let service = try ServiceProcess(name, arguments: arguments, environment: environment)
            do {
                try await service.waitUntilReady()
                return service
            } catch let error as ServiceDidNotStart where attempt < 3 && error.output.contains("Address already in use") {
                service.process.send(SIGKILL)
                attempt += 1
            }
        }
    }
}

package struct ServiceDidNotStart: Error, CustomStringConvertible {
    package init(name: String, output: String) {
        self.name = name
        self.output = output
    }

    var name: String
    var output: String
    package var description: String { "\(name) did not come up; its output:\n\(output)" }
}

/// Every answer the tests receive from a service, one JSON line each in
/// `$MODELFLEET_TEST_TMPDIR/http-exchanges.jsonl`: `scripts/check-contracts` holds each one to its
/// service's `openapi.yaml`, so a response that drifts from its contract fails the run.
package final class ExchangeLog: Sendable {
    package static let shared = ExchangeLog()
    private let file: Mutex<FileHandle?>

    private init() {
        guard let directory = ProcessInfo.processInfo.environment["MODELFLEET_TEST_TMPDIR"] else {
            file = Mutex(nil)
            return
        }
        let path = URL(fileURLWithPath: directory).appendingPathComponent("http-exchanges.jsonl").path
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = FileHandle(forWritingAtPath: path)
        _ = try? handle?.seekToEnd()
        file = Mutex(handle)
    }

    func record(service: String, method: String, path: String, _ result: HTTPResult) {
        let entry: [String: Any] = [
            "service": service, "method": method, "path": path, "status": result.status,
            "content_type": result.headers["content-type"] ?? "", "body": result.body,
        ]
        guard var line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) else { return }
        line.append(0x0A)
        file.withLock { handle in try? handle?.write(contentsOf: line) }
    }
}

package struct HTTPResult: Sendable {
    package var status: Int
    package var headers: [String: String]
    package var body: String

    package var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    }

    /// The `field` of an error body.
    package var errorField: String? { (json?["error"] as? [String: Any])?["field"] as? String }
    /// The `items` of a page.
    package var items: [[String: Any]] { json?["items"] as? [[String: Any]] ?? [] }
}

/// Why `httpRequest` got no answer, naming the request.
package struct HTTPRequestError: Error, CustomStringConvertible {
    package var description: String
}

/// A plain HTTP/1.1 request on 127.0.0.1 with `Connection: close`, enough for the services' APIs;
/// `headers` are added, and `source` (another loopback address, `127.0.0.7`) is the client's
/// address, as another machine would be to a load balancer hashing on it.
/// It stops reading at the end of the body, not at the end of the connection. A service under
/// the load of the whole suite on two cores can take seconds to answer a large request, so the
/// bound on each read is 30 s: a bound for a hang, not a measure of speed.
package func httpRequest(
    port: Int, method: String, path: String, body: Data? = nil, headers extra: [String: String] = [:], source: String? = nil
) async throws -> HTTPResult {
    try await Task.detached {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        defer { close(fd) }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        var requestHead = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let body { requestHead += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        // The tests' admin key unless the test says otherwise (an empty Authorization: none).
        var sent = extra
        if sent["Authorization"] == nil, let token = TestAPIKeys.admin { sent["Authorization"] = "Bearer \(token)" }
        for (name, value) in sent.sorted(by: { $0.key < $1.key }) where !value.isEmpty { requestHead += "\(name): \(value)\r\n" }
        let request = Array((requestHead + "\r\n").utf8) + (body.map { Array($0) } ?? [])
        guard write(fd, request, request.count) == request.count else { throw POSIXError(.EPIPE) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var failure: String?
        while !isComplete(response) {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 { failure = errno == EAGAIN || errno == EWOULDBLOCK ? "no answer within 30 s" : "read failed: errno \(errno)" }
            if count <= 0 { break }
            response += chunk[0..<count]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else {
            let reason = failure ?? "the service closed the connection after \(response.count) bytes"
            throw HTTPRequestError(description: "\(method) \(path) on port \(port): \(reason)")
        }
        let head = text[..<split.lowerBound].split(separator: "\r\n")
        guard let statusLine = head.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw POSIXError(.EBADMSG)
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return HTTPResult(status: status, headers: headers, body: String(text[split.upperBound...]))
    }.value
}

/// Whether `response` holds the whole head and as many body bytes as its Content-Length says.
private func isComplete(_ response: [UInt8]) -> Bool {
    let separator: [UInt8] = [13, 10, 13, 10]
    guard response.count >= 4, let end = (0...(response.count - 4)).first(where: { Array(response[$0..<$0 + 4]) == separator }) else {
        return false
    }
    let head = String(decoding: response[..<end], as: UTF8.self).lowercased()
    if head.hasPrefix("http/1.1 204") || head.hasPrefix("http/1.1 304") { return true }
    guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
        let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
    else { return false }
    return response.count - (end + 4) >= length
}
