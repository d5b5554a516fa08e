import ChildProcesses
import Foundation
import Logging
import NIOPosix
import Synchronization

/// HAProxy as the load-balancer's child, in master-worker mode: started with a configuration,
/// reloaded (SIGUSR2 to the master: new workers take the new file, old ones finish their
/// connections) with the servers' states and weights carried over by the server-state file, and
/// spoken to through its runtime API socket.
final class HAProxy: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let executable: String
    let settings: HAProxyConfig.Settings
    private let logger: Logger
    private let child = Mutex<ChildProcess?>(nil)

    init(executable: String, settings: HAProxyConfig.Settings, logger: Logger) {
        self.executable = executable
        self.settings = settings
        self.logger = logger
    }

    var isRunning: Bool { child.withLock { $0?.isRunning ?? false } }

    /// Checks `config` with `haproxy -c`; the reason when HAProxy refuses it.
    func check(_ config: String) async throws {
        let file = "\(settings.configFile).check"
        try config.write(toFile: file, atomically: true, encoding: .utf8)
        let checker = try ChildProcess(
            executable: executable, arguments: ["-c", "-q", "-f", file], environment: ProcessInfo.processInfo.environment,
            outputFile: URL(fileURLWithPath: "\(settings.directory)/check.log"))
        let status = await checker.waitForExit(timeout: .seconds(30))
        guard status == 0 else {
            let output = (try? String(contentsOfFile: "\(settings.directory)/check.log", encoding: .utf8)) ?? ""
            throw Failure(description: "HAProxy refused the configuration: \(output.suffix(2_000))")
        }
    }

    /// Writes the files and starts HAProxy (a running one is stopped first); returns once its
    /// runtime API answers.
    func start(config: String) async throws {
        await stop()
        try FileManager.default.createDirectory(atPath: settings.directory, withIntermediateDirectories: true)
        await stopLeftover()
        try HAProxyConfig.noInstanceAnswer.write(toFile: "\(settings.directory)/no-instance.http", atomically: true, encoding: .utf8)
        if !FileManager.default.fileExists(atPath: settings.stateFile) {
            try "1\n".write(toFile: settings.stateFile, atomically: true, encoding: .utf8)
        }
        try config.write(toFile: settings.configFile, atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: settings.socketPath)
        let process = try ChildProcess(
            executable: executable, arguments: ["-W", "-db", "-f", settings.configFile, "-p", pidFile],
            environment: ProcessInfo.processInfo.environment,
            outputFile: URL(fileURLWithPath: "\(settings.directory)/haproxy.log"))
        child.withLock { $0 = process }
        try await waitForWorker(notPID: nil)
        logger.info("haproxy started", metadata: ["pid": "\(process.pid)", "port": "\(settings.trafficPort)"])
    }

    /// Reloads with `config`: the servers' states and weights go to the state file first, the
    /// new worker reads them back. Returns once the new worker answers.
    func reload(config: String) async throws {
        guard let master = child.withLock({ $0 }), master.isRunning else { return try await start(config: config) }
        let before = try? await workerPID()
        if let state = try? await command("show servers state") {
            try state.write(toFile: settings.stateFile, atomically: true, encoding: .utf8)
        }
        try config.write(toFile: settings.configFile, atomically: true, encoding: .utf8)
        master.send(SIGUSR2)
        try await waitForWorker(notPID: before)
    }

    private var pidFile: String { "\(settings.directory)/haproxy.pid" }

    /// An HAProxy a load-balancer killed without its shutdown left running (its pid file in the
    /// same folder): stopped, so that the new one can take the ports.
    private func stopLeftover() async {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("haproxy") == true
        else { return }
        logger.warning("stopping the HAProxy a previous load-balancer left running", metadata: ["pid": "\(pid)"])
        kill(pid, SIGTERM)
        for _ in 0..<50 where kill(pid, 0) == 0 { try? await Task.sleep(for: .milliseconds(100)) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? await Task.sleep(for: .milliseconds(100))
    }

    func stop() async {
        guard let process = child.withLock({ $0 }) else { return }
        process.send(SIGTERM)
        if await process.waitForExit(timeout: .seconds(5)) == nil {
            process.send(SIGKILL)
            _ = await process.waitForExit(timeout: .seconds(5))
        }
        child.withLock { $0 = nil }
    }

    /// The worker's pid, from `show info`.
    private func workerPID() async throws -> Int? {
        let info = try await command("show info")
        return info.split(separator: "\n").first { $0.hasPrefix("Pid: ") }.flatMap { Int($0.dropFirst(5)) }
    }

    /// Until a worker other than `old` answers on the socket (10 s at most).
    private func waitForWorker(notPID old: Int?) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let pid = try? await workerPID(), pid != old { return }
            guard isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let output = (try? String(contentsOfFile: "\(settings.directory)/haproxy.log", encoding: .utf8)) ?? ""
        throw Failure(description: "HAProxy did not come up: \(output.suffix(2_000))")
    }

    /// One runtime API command; its answer.
    func command(_ line: String) async throws -> String {
        let path = settings.socketPath
        return try await NIOThreadPool.singleton.runIfActive { try Self.send(line, to: path) }
    }

    private static func send(_ line: String, to path: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(description: "socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw Failure(description: "HAProxy's runtime API at \(path): errno \(errno)") }
        let request = Array((line + "\n").utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) == request.count else {
            throw Failure(description: "write to HAProxy's runtime API: errno \(errno)")
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw Failure(description: "read from HAProxy's runtime API: errno \(errno)") }
            if count == 0 { break }
            answer += chunk[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
