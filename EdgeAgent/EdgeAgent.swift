import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import NIOPosix
import ServiceLifecycle
import Synchronization

/// One edge agent: connects with its last will, says who it is, keeps its server's pipelines and
/// deployment instances as the retained desired state says, and reports, beats and measures
/// (`docs/device-protocol.md`).
///
/// Run it in a `ServiceGroup` after its ``mqtt`` client, so that on shutdown it stops first and
/// the client still publishes the "stopping" presence.
final class EdgeAgent: Service, Sendable {
    /// What the agent has applied, for its reports, hellos and heartbeats.
    private struct Applied {
        var generation = 0
        var desired: [PipelineKey: DesiredState.Pipeline] = [:]
        var statuses: [PipelineKey: PipelineStatus] = [:]
        /// Pipelines the last apply removed, reported as `removed` for that generation.
        var removed: [PipelineKey] = []
        var correlationID: UUID?
    }

    let configuration: AgentConfiguration
    let mqtt: MQTTClient
    private let agentID: TopicLevel
    private let runtime: any PipelineRuntime
    private let instances: InstanceRuntime
    /// The artifact downloads of the runtime, when it fetches any; in-progress reports say how far.
    private let downloads: DownloadMeter?
    private let host: HostSampler
    private let logger: Logger
    private let applied = Locked(Applied())
    private let startedAt = ContinuousClock.now
    /// Reports go one at a time, each composed at its turn (``sendReport()``).
    private let reportQueue = SerialQueue()

    private var stateFile: URL { configuration.stateDirectory.appendingPathComponent("desired-state.json") }

    init(configuration: AgentConfiguration, host: HostSampler, logger: Logger) throws {
        self.configuration = configuration
        self.agentID = try TopicLevel(configuration.agentID)
        self.host = host
        var logger = logger
        logger[metadataKey: "agent_id"] = "\(configuration.agentID)"
        self.logger = logger
        let devices = Set(configuration.devices.map(\.key))
        let artifacts = ArtifactStore(directory: configuration.stateDirectory.appendingPathComponent("artifacts"))
        instances = InstanceRuntime(
            settings: configuration.instances, artifacts: artifacts, directory: configuration.stateDirectory, logger: logger)
        switch configuration.runtime {
        case .builtIn(let fps):
            runtime = BuiltInRuntime(fps: fps, devices: devices, artifacts: artifacts)
            downloads = artifacts.downloads
        case .process(let command):
            runtime = ProcessRuntime(command: command, devices: devices, directory: configuration.stateDirectory, logger: logger)
            downloads = nil
        }

        var mqttConfiguration = try configuration.mqttConfiguration()
        let presenceTopic = Topic.agent(agentID, .presence).path
        let agentID = configuration.agentID
        let presence = { @Sendable (state: AgentMessage.Presence.State, reason: AgentMessage.Presence.Reason) in
            MQTTOutgoingMessage(
                topic: presenceTopic, payload: Self.encode(AgentMessage.Presence(agentID: agentID, state: state, reason: reason)),
                qos: .atLeastOnce, retain: true, properties: MQTTProperties(contentType: "application/json"))
        }
        mqttConfiguration.lastWill = presence(.offline, .connectionLost)
        mqttConfiguration.farewell = { presence(.offline, .stopping) }
        let helloTopic = Topic.agent(self.agentID, .hello).path
        let applied = self.applied
        // After every connect: presence first, then the hello with the generation applied now.
        mqttConfiguration.birth = {
            [
                presence(.online, .connected),
                MQTTOutgoingMessage(
                    topic: helloTopic, payload: Self.encode(Self.hello(configuration, generation: applied.withLock { $0.generation })),
                    qos: .atLeastOnce, properties: MQTTProperties(contentType: "application/json")),
            ]
        }
        self.mqtt = try MQTTClient(configuration: mqttConfiguration, logger: logger)
    }

    func run() async throws {
        await resume()
        // Made before the client connects, so it is in place for the retained document.
        let desired = try mqtt.makeSubscription(to: Topic.agent(agentID, .desired).path, qos: .atLeastOnce)
        let requests = try mqtt.makeSubscription(to: Topic.agent(agentID, .request).path, qos: .atLeastOnce)
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { for await message in desired { await self.receive(message) } }
                group.addTask { for await message in requests { await self.answer(message) } }
                group.addTask { await self.every(self.configuration.heartbeatSeconds) { await self.sendHeartbeat() } }
                // Again now and then, besides after each connect: a control plane that missed it
                // (a gateway or registry restarting at that moment) learns of this server anyway.
                group.addTask {
                    // The connect's own hello has just gone: the first repeat after a whole interval.
                    let interval = self.configuration.helloSeconds
                    await self.every(interval, first: interval + Double.random(in: 0..<(interval / 10))) {
                        await self.publish(
                            Self.hello(self.configuration, generation: self.applied.withLock { $0.generation }), on: .hello, qos: .atLeastOnce)
                    }
                }
                group.addTask { await self.every(self.configuration.telemetrySeconds) { await self.sendTelemetry() } }
                group.addTask { await self.every(Self.instanceFiguresSeconds) { await self.sendInstanceFigures() } }
                group.addTask {
                    for await _ in self.runtime.changes {
                        let statuses = await self.runtime.statuses()
                        self.applied.withLock { $0.statuses = statuses }
                        await self.sendReport()
                    }
                }
                group.addTask {
                    for await _ in self.instances.changes { await self.sendReport() }
                }
                // Instances' states again now and then, besides at each change: a report lost on
                // the way (an orchestrator restarting, a transaction it could not commit) would
                // otherwise leave an instance shown as starting until its next change.
                group.addTask {
                    await self.every(Self.instanceReportSeconds) {
                        if !(await self.instances.reports().isEmpty) { await self.sendReport() }
                    }
                }
            }
        }
        await runtime.stopAll()
        await instances.stopAll()
    }

    /// How often an agent running instances repeats its report.
    static let instanceReportSeconds = 10.0

    // MARK: Desired state

    /// Applies the document kept on disk, so that the pipelines run again before the broker is
    /// reachable; the retained document then brings anything newer.
    private func resume() async {
        guard let data = try? Data(contentsOf: stateFile) else { return }
        do {
            let envelope = try Envelope<DesiredState>.decode(from: data)
            await apply(envelope, saving: nil)
            logger.info("resumed the last applied desired state", metadata: ["generation": "\(envelope.payload.generation)"])
        } catch {
            logger.error("ignoring an unreadable saved desired state", metadata: ["file": "\(stateFile.path)", "error": "\(error)"])
        }
    }

    private func receive(_ message: MQTTMessage) async {
        let envelope: Envelope<DesiredState>
        do {
            _ = try DeviceProtocolSchemas.shared.schema(for: .desired).validate(json: message.payload)
            envelope = try Envelope<DesiredState>.decode(from: message.payload)
        } catch {
            logger.error("ignoring an invalid desired state", metadata: ["error": "\(error)"])
            return
        }
        guard envelope.payload.agentID == configuration.agentID else {
            logger.error("ignoring a desired state for another agent", metadata: ["payload_agent_id": "\(envelope.payload.agentID)"])
            return
        }
        let current = applied.withLock { $0.generation }
        guard envelope.payload.generation > current else {
            // Already applied (a reconnect brings the retained document again): say so again.
            await sendReport()
            return
        }
        // The bytes as received, not encoded again: they are the document, checked above.
        await apply(envelope, saving: message.payload)
        await sendReport()
    }

    /// Applies a document; `document`, its bytes, is kept on disk for the next start (nil when
    /// it came from there).
    private func apply(_ envelope: Envelope<DesiredState>, saving document: Data?) async {
        var desired: [PipelineKey: DesiredState.Pipeline] = [:]
        for device in envelope.payload.devices {
            for pipeline in device.pipelines {
                desired[PipelineKey(deviceKey: device.deviceKey, pipelineID: pipeline.id)] = pipeline
            }
        }
        // A long apply (artifacts downloading) says every few seconds that it goes on, so that
        // ModelFleet neither sends the document again nor gives up on it meanwhile.
        let generation = envelope.payload.generation
        downloads?.reset()
        let progress = Task {
            while true {
                try await Task.sleep(for: .seconds(configuration.progressSeconds))
                await sendProgress(applying: generation, correlationID: envelope.correlationID)
            }
        }
        let statuses = await runtime.apply(desired)
        await instances.apply(envelope.payload.instances ?? [])
        progress.cancel()
        _ = await progress.result  // an in-progress report under way goes out before the report
        if let document {
            do {
                // On the blocking pool: an atomic write syncs the file to disk, and on a
                // concurrency thread it would hold up every other agent of a simulated fleet.
                try await NIOThreadPool.singleton.runIfActive { [directory = configuration.stateDirectory, stateFile] in
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    try document.write(to: stateFile, options: .atomic)
                }
            } catch {
                logger.error("could not save the desired state; a restart will start from the previous one", metadata: ["error": "\(error)"])
            }
        }
        let failed = statuses.values.count { $0 != .running }
        applied.withLock { state in
            state.removed = state.desired.keys.filter { desired[$0] == nil }
            state.desired = desired
            state.statuses = statuses
            state.generation = envelope.payload.generation
            state.correlationID = envelope.correlationID
        }
        logger.info(
            "applied a desired state",
            metadata: [
                "generation": "\(envelope.payload.generation)", "pipelines": "\(desired.count)", "failed": "\(failed)",
                "instances": "\(envelope.payload.instances?.count ?? 0)",
            ])
    }

    // MARK: Requests

    /// Answers a request from the gateway (an instance's logs) on the response channel.
    private func answer(_ message: MQTTMessage) async {
        let request: AgentMessage.Request
        do {
            _ = try DeviceProtocolSchemas.shared.schema(for: .request).validate(json: message.payload)
            request = try Envelope<AgentMessage.Request>.decode(from: message.payload).payload
        } catch {
            logger.error("ignoring an invalid request", metadata: ["error": "\(error)"])
            return
        }
        guard request.agentID == configuration.agentID else { return }
        var response = AgentMessage.Response(agentID: configuration.agentID, requestID: request.requestID)
        switch request.kind {
        case .instanceLogs:
            if let lines = await instances.logs(of: request.instanceID, tail: request.tail) {
                response.lines = Self.fitted(lines)
            } else {
                response.error = "no instance \(request.instanceID) runs on this server"
            }
        }
        await publish(response, on: .response, qos: .atLeastOnce)
    }

    /// Lines as a response carries them: NULs (which the protocol refuses) taken out, each cut to
    /// its longest, the oldest left out beyond 1 MiB in all, so the response stays within the
    /// gateway's limit.
    static func fitted(_ lines: [String]) -> [String] {
        var kept: [String] = []
        var bytes = 0
        for line in lines.reversed() {
            var scalars = String.UnicodeScalarView(line.unicodeScalars.lazy.filter { $0 != "\u{0}" })
            if scalars.count > AgentMessage.Response.maximumLineLength {
                scalars = String.UnicodeScalarView(scalars.prefix(AgentMessage.Response.maximumLineLength))
            }
            let cut = String(scalars)
            bytes += cut.utf8.count + 8
            if bytes > 1 << 20 { break }
            kept.append(cut)
        }
        return kept.reversed()
    }

    // MARK: Publishing

    /// Sends the agent's report: every pipeline's and instance's state now. Reports are asked for
    /// by several tasks at once (a change, the 10 s repeat, an apply); each is composed and
    /// published in turn, so an older picture never reaches the orchestrator after a newer one (an
    /// instance reported `starting` after it was reported `ready` would look out of service
    /// again, and a roll would move the next one too early).
    private func sendReport() async {
        await reportQueue.run { [self] in await composeAndSendReport() }
    }

    private func composeAndSendReport() async {
        let instanceReports = await instances.reports()
        let (report, correlationID) = applied.withLock { state in
            var byDevice: [String: [AgentMessage.Report.PipelineReport]] = [:]
            for (key, status) in state.statuses {
                let line: AgentMessage.Report.PipelineReport
                switch status {
                case .running: line = .init(pipelineID: key.pipelineID, state: .running)
                case .failed(let reason): line = .init(pipelineID: key.pipelineID, state: .failed, reason: String(reason.prefix(1024)))
                }
                byDevice[key.deviceKey, default: []].append(line)
            }
            for key in state.removed {
                byDevice[key.deviceKey, default: []].append(.init(pipelineID: key.pipelineID, state: .removed))
            }
            let devices = byDevice.keys.sorted().map { key in
                AgentMessage.Report.DeviceReport(deviceKey: key, pipelines: byDevice[key]!.sorted { $0.pipelineID < $1.pipelineID })
            }
            let report = AgentMessage.Report(
                agentID: configuration.agentID, generation: state.generation, devices: devices,
                instances: instanceReports.isEmpty ? nil : instanceReports)
            return (report, state.correlationID)
        }
        await publish(report, on: .report, qos: .atLeastOnce, correlationID: correlationID)
    }

    /// An in-progress report: `generation` is being applied, its artifacts fetched this far.
    private func sendProgress(applying generation: Int, correlationID: UUID?) async {
        let figures = downloads?.current
        let report = AgentMessage.Report(
            agentID: configuration.agentID, generation: generation,
            applying: .init(bytesFetched: figures?.fetched ?? 0, bytesTotal: figures?.total), devices: [])
        await publish(report, on: .report, qos: .atLeastOnce, correlationID: correlationID)
    }

    private func sendHeartbeat() async {
        let uptime = ContinuousClock.now - startedAt
        let heartbeat = AgentMessage.Heartbeat(
            agentID: configuration.agentID, uptimeSeconds: Double(uptime.components.seconds), appliedGeneration: applied.withLock { $0.generation })
        await publish(heartbeat, on: .heartbeat, qos: .atMostOnce)
    }

    private func sendTelemetry() async {
        let figures = await runtime.collectFigures()
        let pipelines = figures.keys.sorted().map { key in
            let figure = figures[key]!
            return AgentMessage.Telemetry.Pipeline(
                deviceKey: key.deviceKey, pipelineID: key.pipelineID, frames: figure.frames, detections: figure.detections, errors: figure.errors,
                latencyMs: .init(p50: figure.latencies.quantile(0.5), p95: figure.latencies.quantile(0.95), p99: figure.latencies.quantile(0.99)))
        }
        let sample = host.sample()
        let telemetry = AgentMessage.Telemetry(
            agentID: configuration.agentID, siteID: configuration.site.id, intervalSeconds: configuration.telemetrySeconds,
            host: .init(cpuPercent: sample.cpuPercent, memoryUsedBytes: sample.memoryUsedBytes), pipelines: pipelines)
        await publish(telemetry, on: .telemetry, qos: .atMostOnce)
    }

    /// How often an agent running deployment instances sends their figures (the metrics
    /// aggregator's resolution).
    static let instanceFiguresSeconds = 1.0

    /// The instances' figures of the last second, in a telemetry message of their own (pipelines
    /// keep their slower one); nothing while the agent runs no instance.
    private func sendInstanceFigures() async {
        let figures = await instances.figures()
        guard !figures.isEmpty else { return }
        let sample = host.sample()
        let telemetry = AgentMessage.Telemetry(
            agentID: configuration.agentID, siteID: configuration.site.id, intervalSeconds: Self.instanceFiguresSeconds,
            host: .init(cpuPercent: sample.cpuPercent, memoryUsedBytes: sample.memoryUsedBytes), pipelines: [], instances: figures)
        await publish(telemetry, on: .telemetry, qos: .atMostOnce)
    }

    private func publish<Payload: ContractPayload>(_ payload: Payload, on channel: Topic.AgentChannel, qos: MQTTQoS, correlationID: UUID? = nil) async
    {
        guard mqtt.connectionState.isConnected || qos != .atMostOnce else { return }
        do {
            try await mqtt.publish(
                Topic.agent(agentID, channel).path, payload: try Envelope(payload: payload, correlationID: correlationID).encoded(), qos: qos,
                properties: MQTTProperties(contentType: "application/json"))
        } catch {
            logger.debug("could not publish", metadata: ["channel": "\(channel)", "error": "\(error)"])
        }
    }

    /// Runs `body` every `seconds`, the first time after `first` seconds (by default a random
    /// part of one interval, so that agents started together spread their messages).
    private func every(_ seconds: Double, first: Double? = nil, _ body: () async -> Void) async {
        try? await Task.sleep(for: .seconds(first ?? Double.random(in: 0..<seconds)))
        while !Task.isCancelled {
            await body()
            try? await Task.sleep(for: .seconds(seconds))
        }
    }

    private static func hello(_ configuration: AgentConfiguration, generation: Int) -> AgentMessage.Hello {
        AgentMessage.Hello(
            agentID: configuration.agentID, site: configuration.site, serverName: configuration.serverName,
            agentVersion: AgentConfiguration.agentVersion,
            capacity: configuration.capacity, supportsPipelines: configuration.supportsPipelines, devices: configuration.devices,
            appliedGeneration: generation)
    }

    private static func encode<Payload: ContractPayload>(_ payload: Payload) -> Data {
        // Encoding the protocol's own structs of strings and numbers does not fail.
        (try? Envelope(payload: payload).encoded()) ?? Data()
    }
}

/// A value behind a lock that closures can share (a `Mutex` cannot be captured: it is not copyable).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}

/// Runs closures one at a time, in the order they were handed in, each to its end (its awaits
/// included) before the next starts: what an actor does not promise across its awaits.
final class SerialQueue: Sendable {
    private let last = Mutex<Task<Void, Never>?>(nil)

    /// Runs `body` after everything handed in before it, and returns once it has.
    func run(_ body: @escaping @Sendable () async -> Void) async {
        await enqueue(body).value
    }

    /// Hands `body` in now; the task ends when it has run.
    func enqueue(_ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        last.withLock { last in
            let previous = last
            let next = Task {
                await previous?.value
                await body()
            }
            last = next
            return next
        }
    }
}
