import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import Synchronization

/// Runs the deployment instances of this server's desired state, each as an HTTP model server
/// on a port of its own: the built-in one (``BuiltInModelServer``) or a process of the
/// operator's command, given its port in `PORT`. An instance whose entry changes (environment,
/// resources, runtime, version) is stopped and started again; one no longer listed is stopped and
/// reported `stopped` once. A crashed instance is restarted with backoff and counted.
actor InstanceRuntime {
    struct Settings: Sendable, Equatable {
        /// The address instances listen on and report (`instances.host`).
        var host = "127.0.0.1"
        /// Whether process instances may run: a deployment's command runs on this server as the
        /// agent's user, so an agent allows it only when its operator says so
        /// (`instances.allow_process`).
        var allowProcess = false
    }

    private let settings: Settings
    private let artifacts: ArtifactStore
    private let directory: URL
    private let logger: Logger
    private var running: [String: (definition: DesiredState.Instance, instance: ManagedInstance)] = [:]
    /// Instances the last apply stopped, reported `stopped` with that generation.
    private var stopped: [DesiredState.Instance] = []
    nonisolated let changes: AsyncStream<Void>
    private let notify: AsyncStream<Void>.Continuation

    init(settings: Settings, artifacts: ArtifactStore, directory: URL, logger: Logger) {
        self.settings = settings
        self.artifacts = artifacts
        self.directory = directory.appendingPathComponent("instances", isDirectory: true)
        self.logger = logger
        (changes, notify) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Makes the running instances `desired`: the ones gone or changed stopped, the new or
    /// changed ones started (they report ready once they answer their health check).
    func apply(_ desired: [DesiredState.Instance]) async {
        let wanted = Dictionary(desired.map { ($0.instanceID, $0) }, uniquingKeysWith: { first, _ in first })
        stopped = []
        // Only the revision number changed (an edit that needs no restart): kept running.
        for (id, entry) in running {
            if let new = wanted[id], new != entry.definition, new.runsLike(entry.definition) {
                entry.instance.specRevision = new.specRevision
                running[id] = (new, entry.instance)
            }
        }
        // Stopped together: each drains for a moment first.
        let leaving = running.filter { wanted[$0.key] != $0.value.definition }
        for (id, entry) in leaving {
            running[id] = nil
            if wanted[id] == nil { stopped.append(entry.definition) }
        }
        await withDiscardingTaskGroup { group in
            for entry in leaving.values { group.addTask { await entry.instance.stop() } }
        }
        for (id, definition) in wanted.sorted(by: { $0.key < $1.key }) where running[id] == nil {
            let instance = ManagedInstance(
                definition: definition, settings: settings, artifacts: artifacts, directory: directory, logger: logger, changed: notify)
            instance.start()
            running[id] = (definition, instance)
        }
    }

    /// Every instance's state, and those the last apply stopped.
    func reports() -> [AgentMessage.Report.InstanceReport] {
        let live = running.values.map { $0.instance.report() }
        let gone = stopped.map {
            AgentMessage.Report.InstanceReport(instanceID: $0.instanceID, state: .stopped, version: $0.version, specRevision: $0.specRevision)
        }
        return (live + gone).sorted { $0.instanceID < $1.instanceID }
    }

    /// The last `tail` lines of an instance's output; nil for an instance this agent does not run.
    /// Each running instance's figures since the last call (``InstanceMeter``).
    func figures() -> [AgentMessage.Telemetry.Instance] {
        running.keys.sorted().compactMap { id in
            running[id].map { $0.instance.meter.collect(definition: $0.definition, ready: $0.instance.isReady) }
        }
    }

    func logs(of id: String, tail: Int) -> [String]? {
        running[id]?.instance.logs(tail: tail)
    }

    /// The agent stopping: every instance at once, without a drain (a simulated fleet stops
    /// hundreds of agents one after the other).
    func stopAll() async {
        let all = running.values.map(\.instance)
        running = [:]
        await withDiscardingTaskGroup { group in
            for instance in all { group.addTask { await instance.stop(draining: false) } }
        }
        notify.finish()
    }
}

/// One instance and its supervisor task: starts it, watches it, restarts it after a crash with
/// capped exponential backoff (1 s doubling to 60 s, from 1 again after a minute of health),
/// and stops it (SIGTERM, then SIGKILL after 5 s, for a process).
final class ManagedInstance: Sendable {
    private struct Status {
        var state = AgentMessage.Report.InstanceState.starting
        var reason: String?
        var address: String?
        var restarts = 0
        var lines = LogLines(capacity: 1_000)
    }

    let definition: DesiredState.Instance
    private let settings: InstanceRuntime.Settings
    private let artifacts: ArtifactStore
    private let directory: URL
    private let logger: Logger
    private let changed: AsyncStream<Void>.Continuation
    private let status = Mutex(Status())
    private let supervisor = Mutex<Task<Void, Never>?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let runsRevision: Atomic<Int>
    /// Its requests and resource use, collected into the agent's telemetry every second.
    let meter = InstanceMeter()

    /// The `spec_revision` it reports: its entry's, moved on by edits that need no restart.
    var specRevision: Int {
        get { runsRevision.load(ordering: .acquiring) }
        set { runsRevision.store(newValue, ordering: .releasing) }
    }

    /// How long a ready built-in instance keeps serving once asked to stop, its health check
    /// answering 503: load balancers stop sending it requests, and those under way finish.
    static let drainTime = Duration.seconds(2)

    /// Asked to stop: draining.
    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Passed its health check and not stopping.
    var isReady: Bool { !isStopping && status.withLock { $0.state == .ready } }

    init(
        definition: DesiredState.Instance, settings: InstanceRuntime.Settings, artifacts: ArtifactStore, directory: URL, logger: Logger,
        changed: AsyncStream<Void>.Continuation
    ) {
        self.definition = definition
        self.runsRevision = Atomic(definition.specRevision)
        self.settings = settings
        self.artifacts = artifacts
        self.directory = directory
        var logger = logger
        logger[metadataKey: "instance_id"] = "\(definition.instanceID)"
        self.logger = logger
        self.changed = changed
    }

    func start() {
        // Detached: the agent's graceful shutdown must not reach the instance's server through
        // the task-local shutdown context (Hummingbird would stop it at once, and the supervisor
        // take that for a crash); the agent stops its instances itself, draining them.
        supervisor.withLock { $0 = Task.detached { await self.supervise() } }
    }

    /// Stops it; a ready built-in one drains first unless `draining` is false.
    func stop(draining: Bool = true) async {
        guard let task = supervisor.withLock({ $0 }) else { return }
        stopping.store(true, ordering: .releasing)
        if draining, definition.runtime.kind == .builtin, status.withLock({ $0.state == .ready }) {
            log("stopping: draining for \(Self.drainTime.components.seconds) s")
            try? await Task.sleep(for: Self.drainTime)
        }
        task.cancel()
        await task.value
    }

    func report() -> AgentMessage.Report.InstanceReport {
        status.withLock {
            AgentMessage.Report.InstanceReport(
                instanceID: definition.instanceID, state: $0.state, reason: $0.reason.map { String($0.prefix(1024)) }, address: $0.address,
                version: definition.version, restarts: $0.restarts, specRevision: specRevision)
        }
    }

    func logs(tail: Int) -> [String] {
        if definition.runtime.kind == .process { return LogLines.tail(of: outputFile, lines: tail) }
        return status.withLock { $0.lines.last(tail) }
    }

    /// A line of the built-in server's output (a process writes its own to its file).
    func log(_ line: String) {
        let stamp = Date().formatted(.iso8601)
        status.withLock { $0.lines.append("\(stamp) \(line)") }
    }

    private var outputFile: URL { directory.appendingPathComponent("\(definition.instanceID).log") }

    private func set(_ state: AgentMessage.Report.InstanceState, reason: String? = nil, address: String?? = nil, restarted: Bool = false) {
        let changedNow = status.withLock { status -> Bool in
            let before = (status.state, status.reason, status.address, status.restarts)
            status.state = state
            status.reason = reason
            if let address { status.address = address }
            if restarted { status.restarts += 1 }
            return before != (status.state, status.reason, status.address, status.restarts)
        }
        if changedNow { changed.yield() }
    }

    // MARK: Supervision

    private func supervise() async {
        var failures = 0
        var restarting = false
        while !Task.isCancelled {
            set(.starting, restarted: restarting)
            let started = ContinuousClock.now
            let outcome: String
            do {
                let model = try await fetchModel()
                switch definition.runtime.kind {
                case .builtin: outcome = try await runBuiltIn(model: model)
                case .process: outcome = try await runProcess(model: model)
                }
            } catch is CancellationError {
                return
            } catch {
                outcome = "\(error)"
            }
            guard !Task.isCancelled else { return }
            failures = ContinuousClock.now - started > .seconds(60) ? 1 : failures + 1
            let delay = min(60, 1 << min(failures - 1, 6))
            set(.failed, reason: "\(outcome); restarting in \(delay) s", address: .some(nil))
            logger.warning("deployment instance failed", metadata: ["reason": "\(outcome)", "restart_in_seconds": "\(delay)"])
            log("failed: \(outcome); restarting in \(delay) s")
            try? await Task.sleep(for: .seconds(delay))
            restarting = true
        }
    }

    /// The model's file when the artifact can be fetched (checked against its sha256); nil for
    /// the names-only schemes of simulated fleets (`s3://`, as pipelines treat them).
    private func fetchModel() async throws -> URL? {
        guard ArtifactStore.canFetch(definition.artifactURI) else { return nil }
        do {
            return try await artifacts.fetch(definition.artifactURI, sha256: definition.sha256)
        } catch {
            throw InstanceFailure("model \(definition.modelName) \(definition.version): \(error)")
        }
    }

    /// Serves until cancelled (then returns normally, and the supervisor stops) or until the
    /// server fails (the reason, for a restart).
    private func runBuiltIn(model: URL?) async throws -> String {
        let knobs = try BuiltInModelServer.Knobs(environment: definition.env, version: definition.version)
        let server = BuiltInModelServer(definition: definition, knobs: knobs, instance: self)
        try await server.run(host: settings.host) { port in
            self.set(.starting, address: "\(self.settings.host):\(port)")
            self.log("listening on \(self.settings.host):\(port)")
            if knobs.startupSeconds > 0 {
                self.log("starting up for \(knobs.startupSeconds) s (SIM_STARTUP_SECONDS)")
                try? await Task.sleep(for: .milliseconds(Int64(knobs.startupSeconds * 1_000)))
            }
            guard !Task.isCancelled else { return }
            server.markReady()
            self.set(.ready, address: "\(self.settings.host):\(port)")
            self.log("ready")
        }
        try Task.checkCancellation()
        return "the built-in server stopped"
    }

    /// Starts the command with its port, waits for its health check, and watches it; returns how
    /// it ended.
    private func runProcess(model: URL?) async throws -> String {
        guard settings.allowProcess else {
            throw InstanceFailure("process instances are not allowed on this server (agent configuration instances.allow_process)")
        }
        guard let command = definition.runtime.command, !command.isEmpty else { throw InstanceFailure("the process runtime needs a command") }
        let port = try FreePort.pick(host: settings.host)
        var environment = ProcessInfo.processInfo.environment.merging(definition.env) { $1 }
        environment["PORT"] = "\(port)"
        environment["HOST"] = settings.host
        environment["INSTANCE_ID"] = definition.instanceID
        environment["DEPLOYMENT"] = definition.deployment
        environment["MODEL_ID"] = definition.modelID.lowercasedString
        environment["MODEL_NAME"] = definition.modelName
        environment["MODEL_VERSION"] = definition.version
        if let model { environment["MODEL_PATH"] = model.path }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let process: ChildProcess
        do {
            process = try ChildProcess(
                executable: command[0], arguments: Array(command.dropFirst()), environment: environment, outputFile: outputFile)
        } catch {
            throw InstanceFailure("cannot start '\(command[0])': \(error)")
        }
        let address = "\(settings.host):\(port)"
        set(.starting, address: address)
        meter.watch(processID: process.pid)
        defer {
            meter.watch(processID: 0)
            if process.isRunning {
                process.send(SIGTERM)
                Task.detached {
                    if await process.waitForExit(timeout: .seconds(5)) == nil { process.send(SIGKILL) }
                }
            }
        }
        var ready = false
        while process.isRunning {
            if Task.isCancelled {
                process.send(SIGTERM)
                if await process.waitForExit(timeout: .seconds(5)) == nil {
                    process.send(SIGKILL)
                    _ = await process.waitForExit(timeout: .seconds(5))
                }
                throw CancellationError()
            }
            if !ready, await HealthProbe.answers(host: settings.host, port: port, path: definition.healthCheckPath) {
                ready = true
                set(.ready, address: address)
            }
            try? await Task.sleep(for: .milliseconds(ready ? 200 : 250))
        }
        return "exited with status \(process.status ?? -1)"
    }
}

struct InstanceFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The last lines of an output, kept in a ring.
struct LogLines: Sendable {
    private var lines: [String] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ line: String) {
        if lines.count < capacity {
            lines.append(line)
        } else {
            lines[next] = line
            next = (next + 1) % capacity
        }
    }

    func last(_ count: Int) -> [String] {
        let ordered = Array(lines[next...] + lines[..<next])
        return Array(ordered.suffix(count))
    }

    /// The last `lines` lines of a file, read from its last 256 KiB.
    static func tail(of file: URL, lines count: Int) -> [String] {
        guard let handle = try? FileHandle(forReadingFrom: file) else { return [] }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > 262_144 ? size - 262_144 : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // cut mid-line
        return Array(lines.suffix(count))
    }
}

extension DesiredState.Instance {
    /// Whether `other` runs the same (everything but the revision numbers): no restart between them.
    func runsLike(_ other: DesiredState.Instance) -> Bool {
        var same = other
        same.specRevision = specRevision
        same.revision = revision
        return same == self
    }
}

/// A port the kernel says is free now, for a process told to listen on it. Another program
/// may take it before the process binds; the process then fails and is restarted on another.
enum FreePort {
    static func pick(host: String) throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw InstanceFailure("no socket for a port: errno \(errno)") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr(host == "localhost" ? "127.0.0.1" : host)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw InstanceFailure("cannot bind a port on \(host): errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
