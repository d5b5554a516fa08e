import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import Synchronization

/// Runs each pipeline as a process of the operator's choosing and supervises it: the command is
/// started with the pipeline written to a JSON file, restarted with capped exponential backoff
/// when it exits, and stopped (SIGTERM, then SIGKILL after 5 s) when the pipeline is removed.
actor ProcessRuntime: PipelineRuntime {
    private let command: [String]
    private let devices: Set<String>
    private let directory: URL
    private let logger: Logger
    private var pipelines: [PipelineKey: (definition: DesiredState.Pipeline, task: Task<Void, Never>?, status: SharedStatus)] = [:]
    nonisolated let changes: AsyncStream<Void>
    private let notify: AsyncStream<Void>.Continuation

    init(command: [String], devices: Set<String>, directory: URL, logger: Logger) {
        self.command = command
        self.devices = devices
        self.directory = directory
        self.logger = logger
        (changes, notify) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func apply(_ desired: [PipelineKey: DesiredState.Pipeline]) async -> [PipelineKey: PipelineStatus] {
        let plan = ReconcilePlan(current: pipelines.mapValues { ($0.definition, $0.status.value) }, desired: desired)
        for key in plan.stop {
            if let task = pipelines.removeValue(forKey: key)?.task {
                task.cancel()
                await task.value
            }
        }
        for key in plan.start {
            if let task = pipelines.removeValue(forKey: key)?.task {
                task.cancel()
                await task.value
            }
            let definition = desired[key]!
            let status = SharedStatus()
            guard devices.contains(key.deviceKey) else {
                status.value = .failed(reason: "unknown device '\(key.deviceKey)' on this server")
                pipelines[key] = (definition, nil, status)
                continue
            }
            do {
                let file = try write(definition, for: key)
                let arguments = command.map {
                    $0.replacingOccurrences(of: "{pipeline_file}", with: file.path)
                        .replacingOccurrences(of: "{device_key}", with: key.deviceKey)
                        .replacingOccurrences(of: "{pipeline_id}", with: key.pipelineID)
                }
                // Started here, once, so that the apply's report already says whether it could start.
                let first = try start(arguments, for: key)
                status.value = .running
                let task = Task { await self.supervise(first, arguments: arguments, key: key, status: status) }
                pipelines[key] = (definition, task, status)
            } catch {
                status.value = .failed(reason: "cannot start '\(command[0])': \(error)")
                pipelines[key] = (definition, nil, status)
            }
        }
        return statuses()
    }

    func statuses() -> [PipelineKey: PipelineStatus] { pipelines.mapValues { $0.status.value } }

    /// The process runtime cannot see inside its processes: no per-frame figures.
    func collectFigures() -> [PipelineKey: PipelineFigures] { [:] }

    func stopAll() async {
        for entry in pipelines.values {
            entry.task?.cancel()
            await entry.task?.value
        }
        pipelines = [:]
        notify.finish()
    }

    private func write(_ pipeline: DesiredState.Pipeline, for key: PipelineKey) throws -> URL {
        let folder = directory.appendingPathComponent("pipelines", isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // Device keys are free text; the file name must not be able to leave the folder.
        let safeDevice = key.deviceKey.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) ? String($0) : "_" }.joined()
        let file = folder.appendingPathComponent("\(safeDevice)--\(key.pipelineID).json")
        try ContractCoding.encoder.encode(pipeline).write(to: file, options: .atomic)
        return file
    }

    private nonisolated func start(_ arguments: [String], for key: PipelineKey) throws -> ChildProcess {
        let log = directory.appendingPathComponent("pipelines/\(key.pipelineID).log")
        return try ChildProcess(
            executable: arguments[0], arguments: Array(arguments.dropFirst()), environment: ProcessInfo.processInfo.environment, outputFile: log)
    }

    /// Watches the process; restarts it after it exits, with backoff; stops it when cancelled.
    private nonisolated func supervise(_ first: ChildProcess, arguments: [String], key: PipelineKey, status: SharedStatus) async {
        var process: ChildProcess? = first
        var failures = 0
        while !Task.isCancelled {
            if let running = process {
                let started = ContinuousClock.now
                while running.isRunning && !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(100))
                }
                if Task.isCancelled {
                    running.send(SIGTERM)
                    if await running.waitForExit(timeout: .seconds(5)) == nil {
                        running.send(SIGKILL)
                        _ = await running.waitForExit(timeout: .seconds(5))
                    }
                    return
                }
                // A run of a minute or more was healthy: start the backoff over.
                failures = ContinuousClock.now - started > .seconds(60) ? 1 : failures + 1
                let delay = min(60, 1 << min(failures - 1, 6))
                status.value = .failed(reason: "exited with status \(running.status ?? -1); restarting in \(delay) s")
                logger.warning(
                    "pipeline process exited",
                    metadata: ["device_key": "\(key.deviceKey)", "pipeline_id": "\(key.pipelineID)", "status": "\(running.status ?? -1)"])
                notify.yield()
                try? await Task.sleep(for: .seconds(delay))
            }
            guard !Task.isCancelled else { return }
            do {
                process = try start(arguments, for: key)
                status.value = .running
                notify.yield()
            } catch {
                process = nil
                failures += 1
                status.value = .failed(reason: "cannot start '\(arguments[0])': \(error); retrying")
                notify.yield()
                try? await Task.sleep(for: .seconds(min(60, 1 << min(failures - 1, 6))))
            }
        }
    }
}

/// A pipeline's status, written by its supervisor and read by the runtime.
final class SharedStatus: Sendable {
    private let status = Mutex(PipelineStatus.running)

    var value: PipelineStatus {
        get { status.withLock { $0 } }
        set { status.withLock { $0 = newValue } }
    }
}
