// `gateway-bench telemetry`: agent telemetry offered paced or unpaced, counted raw and forwarded.

import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

// MARK: - telemetry

struct TelemetryLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telemetry",
        abstract: "Offer agent telemetry and count it on the agents' topics (raw) and on the gateway's internal topic (forwarded).")

    @Option(help: "Broker URL.") var mqttURL = "mqtt://127.0.0.1:1883"
    @Option(help: "Distinct agent ids the messages come from, round-robin (<id-prefix>-0001…).") var agents = 1_000
    @Option(help: "Agent id prefix.") var idPrefix = "bench-telemetry"
    @Option(help: "Publishing clients.") var publishers = 4
    @Option(help: "Messages per second offered in all; 0 publishes as fast as the broker takes them.") var rate = 0.0
    @Option(help: "Seconds of the measured window.") var seconds = 10.0
    @Option(help: "Seconds of publishing before the window, not counted.") var warmup = 1.0
    @Option(help: "Pipelines in each message.") var pipelines = 10
    @Option(
        help: """
            The gateway's process id: its CPU time per message forwarded is then printed (over the \
            whole command), and its MQTT network thread's over the window next to the raw \
            subscriber's per message received, the same client code receiving the same stream.
            """)
    var gatewayPID: Int32?
    @Option(
        help: """
            The broker's process id: its CPU over the window is then printed next to the gateway's, \
            this process's and the machine's idle time, to show how the cores were shared.
            """)
    var brokerPID: Int32?

    func validate() throws {
        guard agents > 0, (1...64).contains(publishers), rate >= 0, seconds > 0, warmup >= 0, (0...1_000).contains(pipelines) else {
            throw ValidationError("need agents > 0, publishers 1...64, rate >= 0, seconds > 0, warmup >= 0, pipelines 0...1000")
        }
    }

    func run() async throws {
        // The gateway's whole process over the whole command (priming, warm-up, window and
        // drain), for its CPU time per message forwarded: unlike the cores it gets, that hardly
        // depends on how the kernel shares them.
        let gatewayProcessStat = gatewayPID.map { "/proc/\($0)/stat" }
        let gatewayCPUAtStart = gatewayProcessStat.flatMap(cpuSeconds(statPath:))
        let stream = try TelemetryStream(agents: agents, idPrefix: idPrefix, pipelines: pipelines)
        let raw = try makeClient("raw")
        let forwarded = try makeClient("forwarded")
        let senders = try (0..<publishers).map { try makeClient("publish-\($0)") }
        let clients = [raw, forwarded] + senders
        let runners = clients.map { client in Task { try await client.run() } }
        defer { runners.forEach { $0.cancel() } }
        for client in clients { try await client.waitUntilConnected(timeout: .seconds(10)) }

        // Room for a few seconds of the fastest stream: the counters measure the gateway, not drops here.
        let rawMessages = try await raw.subscribe(to: Topic.everyAgent(.telemetry).path, qos: .atMostOnce, bufferCapacity: 1 << 20)
        let forwardedMessages = try await forwarded.subscribe(to: Topic.agentTelemetryEvents.path, qos: .atMostOnce, bufferCapacity: 1 << 20)
        let counts = Counts()
        let consumers = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { for await _ in rawMessages { counts.raw.add(1, ordering: .relaxed) } }
                group.addTask {
                    // The gateway forwards telemetry in batches (TelemetryBatch): each says how
                    // many messages it holds; one batch in 64 is parsed to check that it says so.
                    var batches = 0
                    for await batch in forwardedMessages {
                        let count = Int(batch.properties.userProperty(TelemetryBatch.countProperty) ?? "") ?? 0
                        counts.forwarded.add(count, ordering: .relaxed)
                        batches += 1
                        if batches % 64 == 1 && Self.messagesInBatch(batch.payload) != count {
                            counts.miscounted.add(1, ordering: .relaxed)
                        }
                    }
                }
            }
        }
        say(
            "telemetry: \(stream.payloadBytes) bytes per message (\(pipelines) pipelines), \(agents) agents, \(publishers) publishers, "
                + (rate > 0 ? "\(Int(rate)) msg/s offered" : "unpaced") + ", \(fmt(warmup)) s warm-up, \(fmt(seconds)) s window")

        // One message per agent first, until each is forwarded: the gateway announces an agent
        // online on its first message after a silence, awaiting that QoS 1 publish in its receive
        // loop. The stream then measures forwarding from agents that are online, as in a fleet.
        let primeStart = now()
        let properties = MQTTProperties(contentType: "application/json")
        for agent in 0..<agents {
            let payload = stream.payload(agent: agent, variant: 0, sequence: Publisher.primingSequence + UInt64(agent))
            try await senders[agent % publishers].publish(stream.topics[agent], payload: payload, qos: .atMostOnce, properties: properties)
        }
        while counts.raw.load(ordering: .relaxed) < agents || counts.forwarded.load(ordering: .relaxed) < agents {
            guard now() - primeStart < 60 else {
                throw BenchError(
                    "priming: \(counts.raw.load(ordering: .relaxed)) of \(agents) messages received raw and"
                        + " \(counts.forwarded.load(ordering: .relaxed)) forwarded after 60 s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let primed = counts.snapshot(at: now())
        say(String(format: "primed: one message from each of %d agents forwarded in %.3f s", agents, primed.time - primeStart))

        let start = now() + 0.05
        let end = start + warmup + seconds
        let publisherRate = rate / Double(publishers)
        let publisherCount = publishers
        let publishing = Task {
            try await withThrowingDiscardingTaskGroup { group in
                for (index, client) in senders.enumerated() {
                    group.addTask {
                        try await Publisher(client: client, index: index, publishers: publisherCount, stream: stream, counts: counts)
                            .run(rate: publisherRate, start: start, end: end)
                    }
                }
            }
        }
        // The two receiving threads: the raw subscriber's, here, and the gateway's.
        let rawThread = ThreadCPU(pid: getpid(), name: "mqtt raw-")
        let gatewayThread = gatewayPID.map { ThreadCPU(pid: $0, name: "mqtt device-gateway") }
        // How the cores were shared: the gateway, the broker, this process, and what was left.
        let sharing = CoreSharing(processes: [("gateway", gatewayPID), ("broker", brokerPID), ("bench", getpid())])
        try await sleep(until: start + warmup)
        let before = counts.snapshot(at: now())
        let rawCPUBefore = rawThread.seconds()
        let gatewayCPUBefore = gatewayThread.flatMap { $0.seconds() }
        let sharingBefore = sharing.sample()
        try await sleep(until: end)
        let after = counts.snapshot(at: now())
        let rawCPU = difference(rawCPUBefore, rawThread.seconds())
        let gatewayCPU = difference(gatewayCPUBefore, gatewayThread.flatMap { $0.seconds() })
        let cores = sharing.cores(from: sharingBefore, to: sharing.sample(), seconds: after.time - before.time)
        try await publishing.value

        // The rest of the stream: what the gateway forwards late is not lost, and a backlog left
        // in the gateway would count in the next run. Until both counters have every message
        // published (the raw subscriber may be the one behind), or nothing more arrives for 3 s
        // (the broker dropped the rest for a subscriber too far behind; 60 s at most).
        let drainStart = now()
        var last = counts.snapshot(at: drainStart)
        var lastChange = drainStart
        func drained(_ counts: Counts.Snapshot) -> Bool {
            counts.raw - primed.raw >= counts.published && counts.forwarded - primed.forwarded >= counts.published
        }
        while !drained(last) && now() - lastChange < 3 && now() - drainStart < 60 {
            try await Task.sleep(for: .milliseconds(100))
            let next = counts.snapshot(at: now())
            if next.raw != last.raw || next.forwarded != last.forwarded { lastChange = next.time }
            last = next
        }
        let drainSeconds = last.time - drainStart
        let gatewayCPUInAll = difference(gatewayCPUAtStart, gatewayProcessStat.flatMap(cpuSeconds(statPath:)))
        rawMessages.cancel()
        forwardedMessages.cancel()
        await consumers.value
        // A clean DISCONNECT for each client.
        runners.forEach { $0.cancel() }
        for runner in runners { _ = try? await runner.value }

        let window = after.time - before.time
        let offered = Double(after.published - before.published) / window
        let rawRate = Double(after.raw - before.raw) / window
        let forwardedRate = Double(after.forwarded - before.forwarded) / window
        say(
            "result phase=telemetry requested=\(rate > 0 ? String(Int(rate)) : "unpaced") bytes=\(stream.payloadBytes)"
                + String(format: " offered=%.0f raw=%.0f forwarded=%.0f", offered, rawRate, forwardedRate) + " ratio=\(ratio(forwardedRate, rawRate))"
                + String(format: " window_seconds=%.3f drain_seconds=%.3f", window, drainSeconds)
                + " published_total=\(last.published) raw_total=\(last.raw - primed.raw) forwarded_total=\(last.forwarded - primed.forwarded)"
                + " raw_client_dropped=\(rawMessages.droppedCount)"
                + " forwarded_client_dropped=\(forwardedMessages.droppedCount)"
                + Self.microseconds("raw_receive_us", rawCPU, messages: after.raw - before.raw)
                // The gateway forwards what its network thread receives, a batch later.
                + Self.microseconds("gateway_receive_us", gatewayCPU, messages: after.forwarded - before.forwarded)
                + cores.map { String(format: " cores_%@=%.2f", $0.name, $0.cores) }.joined()
                // Priming included: the gateway forwarded `last.forwarded` messages in all.
                + (gatewayCPUInAll.map { String(format: " gateway_cpu_seconds=%.2f", $0) } ?? "")
                + Self.microseconds("gateway_us_per_message", gatewayCPUInAll, messages: last.forwarded))
        let miscounted = counts.miscounted.load(ordering: .relaxed)
        if miscounted > 0 { throw BenchError("\(miscounted) forwarded batches held another number of messages than their count said") }
    }

    private func difference(_ before: Double?, _ after: Double?) -> Double? {
        guard let before, let after else { return nil }
        return after - before
    }

    /// " NAME=µs" of CPU a message, or nothing when the thread or process was not found.
    private static func microseconds(_ name: String, _ seconds: Double?, messages: Int) -> String {
        guard let seconds, messages > 0 else { return "" }
        return String(format: " %@=%.1f", name, seconds * 1e6 / Double(messages))
    }

    /// The number of messages in a forwarded telemetry batch, read from its JSON.
    private static func messagesInBatch(_ payload: Data) -> Int? {
        let envelope = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any]
        return ((envelope?["payload"] as? [String: Any])?["messages"] as? [Any])?.count
    }

    private func makeClient(_ role: String) throws -> MQTTClient { try makeBenchClient(url: mqttURL, role: role) }

    private func fmt(_ value: Double) -> String { String(format: "%g", value) }
    private func ratio(_ value: Double, _ base: Double) -> String { base > 0 ? String(format: "%.3f", value / base) : "n/a" }
}

/// The CPU time of one thread of a process, found by its name in /proc: an MQTT client's network
/// thread is named "mqtt <client id>", of which the kernel keeps 15 bytes.
struct ThreadCPU {
    let pid: Int32
    /// The name as the kernel keeps it.
    let name: String

    init(pid: Int32, name: String) {
        self.pid = pid
        self.name = String(decoding: name.utf8.prefix(15), as: UTF8.self)
    }

    /// User and system time so far, in seconds; nil when no thread (or more than one) has the name.
    func seconds() -> Double? {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let found = tasks.filter { task in
            (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8))?.hasPrefix(name) == true
        }
        guard found.count == 1 else { return nil }
        return cpuSeconds(statPath: "/proc/\(pid)/task/\(found[0])/stat")
    }
}

/// User and system time so far, in seconds, of the process or thread whose `stat` file (proc(5))
/// is at `statPath`; nil when it cannot be read.
func cpuSeconds(statPath: String) -> Double? {
    guard let stat = try? String(contentsOfFile: statPath, encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
    // After the parenthesised name: fields 3 on; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// How the machine's cores were shared over a window: the CPU of some processes, and the idle
/// time of the whole machine (`/proc/stat`: idle and iowait), each in cores.
struct CoreSharing {
    /// Named processes; a nil id is left out.
    let processes: [(name: String, pid: Int32?)]

    struct Sample {
        var processSeconds: [Double?]
        var idleSeconds: Double?
    }

    func sample() -> Sample {
        Sample(processSeconds: processes.map { $0.pid.flatMap { cpuSeconds(statPath: "/proc/\($0)/stat") } }, idleSeconds: Self.idleSeconds())
    }

    /// Each process's cores over the `seconds` between the samples, then `idle`'s; what could
    /// not be read at both ends is left out.
    func cores(from before: Sample, to after: Sample, seconds: Double) -> [(name: String, cores: Double)] {
        var cores: [(name: String, cores: Double)] = []
        for (index, process) in processes.enumerated() {
            if let start = before.processSeconds[index], let end = after.processSeconds[index] {
                cores.append((process.name, (end - start) / seconds))
            }
        }
        if let start = before.idleSeconds, let end = after.idleSeconds { cores.append(("idle", (end - start) / seconds)) }
        return cores
    }

    /// The machine's idle and iowait time so far, summed over its cores, in seconds.
    static func idleSeconds() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        // cpu user nice system idle iowait …, in clock ticks.
        let fields = line.split(separator: " ")
        guard fields.count > 5, let idle = Double(fields[4]), let iowait = Double(fields[5]) else { return nil }
        return (idle + iowait) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Messages published, received raw and received forwarded, counted as they happen.
final class Counts: Sendable {
    let published = Atomic<Int>(0)
    let raw = Atomic<Int>(0)
    let forwarded = Atomic<Int>(0)
    /// Checked batches whose count property was not their number of messages.
    let miscounted = Atomic<Int>(0)

    struct Snapshot {
        var time: Double
        var published: Int
        var raw: Int
        var forwarded: Int
    }

    func snapshot(at time: Double) -> Snapshot {
        Snapshot(
            time: time, published: published.load(ordering: .relaxed), raw: raw.load(ordering: .relaxed),
            forwarded: forwarded.load(ordering: .relaxed))
    }
}

/// Valid telemetry envelopes of every agent, encoded once. Each send stamps a fresh message id
/// into a copy, which costs far less than encoding: the publishers must not be what limits the
/// rate on a small machine.
struct TelemetryStream: Sendable {
    /// Each agent's telemetry topic.
    let topics: [String]
    /// Per agent, a few envelopes with different figures.
    let payloads: [[Data]]
    /// Where the last 12 hex digits of each payload's message id start.
    let idOffsets: [[Int]]
    static let variants = 4

    var payloadBytes: Int { payloads[0][0].count }

    init(agents: Int, idPrefix: String, pipelines: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let key = Array("\"message_id\":\"".utf8)
        var topics: [String] = []
        var payloads: [[Data]] = []
        var idOffsets: [[Int]] = []
        for index in 0..<agents {
            let agentID = try TopicLevel("\(idPrefix)-" + String(format: "%04d", index + 1))
            topics.append(Topic.agent(agentID, .telemetry).path)
            var variants: [Data] = []
            var offsets: [Int] = []
            for _ in 0..<Self.variants {
                let telemetry = AgentMessage.Telemetry(
                    agentID: agentID.value, intervalSeconds: 5,
                    host: .init(
                        cpuPercent: Double.random(in: 20..<85, using: &generator).rounded(toPlaces: 1),
                        memoryUsedBytes: Int64.random(in: 4 << 30..<12 << 30, using: &generator),
                        gpuPercent: Double.random(in: 30..<95, using: &generator).rounded(toPlaces: 1)),
                    pipelines: (0..<pipelines).map { pipeline in
                        let frames = Int.random(in: 140..<151, using: &generator)
                        let p50 = Double.random(in: 12..<25, using: &generator)
                        return AgentMessage.Telemetry.Pipeline(
                            deviceKey: String(format: "cam-%02d", pipeline + 1), pipelineID: "people-count-\(pipeline + 1)", frames: frames,
                            detections: Int.random(in: 0..<frames * 3, using: &generator),
                            errors: Int.random(in: 0..<20, using: &generator) == 0 ? 1 : 0,
                            latencyMs: .init(
                                p50: p50.rounded(toPlaces: 2), p95: (p50 * 1.6).rounded(toPlaces: 2), p99: (p50 * 2.3).rounded(toPlaces: 2)))
                    })
                let payload = try Envelope(payload: telemetry).encoded()
                let bytes = [UInt8](payload)
                guard let found = (0...(bytes.count - key.count)).first(where: { bytes[$0..<$0 + key.count].elementsEqual(key) }),
                    bytes[found + key.count + 23] == UInt8(ascii: "-")
                else { throw BenchError("no message_id in an encoded telemetry envelope") }
                variants.append(payload)
                offsets.append(found + key.count + 24)
            }
            payloads.append(variants)
            idOffsets.append(offsets)
        }
        self.topics = topics
        self.payloads = payloads
        self.idOffsets = idOffsets
    }

    /// The envelope of `agent`, variant `variant`, with `sequence` as the end of its message id.
    func payload(agent: Int, variant: Int, sequence: UInt64) -> Data {
        var payload = payloads[agent][variant]
        let offset = idOffsets[agent][variant]
        let digits = Array("0123456789ABCDEF".utf8)
        payload.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            for position in 0..<12 { raw[offset + position] = digits[Int((sequence >> (4 * UInt64(11 - position))) & 0xf)] }
        }
        return payload
    }
}

/// One publishing client: messages of agents `index`, `index + publishers`, … in turn, QoS 0.
struct Publisher: Sendable {
    let client: MQTTClient
    let index: Int
    let publishers: Int
    let stream: TelemetryStream
    let counts: Counts

    /// A QoS 0 publish only queues the message in libmosquitto: unpaced, the queue would grow
    /// without bound. Every `markerInterval` messages a QoS 1 marker goes out on a topic no one
    /// reads, and the next marker waits for the previous one's PUBACK; the broker has then taken
    /// everything before it (one TCP stream, in order). At most two intervals are in flight.
    static let markerInterval = 500
    /// The message ids of the priming messages end in this tag plus the agent's number; those of
    /// publisher `n` in `n << 40` plus its count.
    static let primingSequence: UInt64 = 0xFFF << 36

    /// Publishes from `start` to `end`, `rate` messages per second (0: as fast as the broker takes them).
    func run(rate: Double, start: Double, end: Double) async throws {
        let markerTopic = "bench/gateway/marker/\(index)"
        let properties = MQTTProperties(contentType: "application/json")
        let agents = stream.topics.count
        // The publisher's number in the top bits keeps message ids unique across publishers.
        let sequenceBase = UInt64(index) << 40
        var sent = 0
        var marker: Task<Void, any Error>?
        try await sleep(until: start)
        while true {
            let time = now()
            guard time < end else { break }
            // Paced: everything due by now, at most a burst of 1,024 (a late publisher catches up
            // over several turns).
            let due = rate > 0 ? min(Int((time - start) * rate) + 1, sent + 1_024) : sent + 256
            while sent < due {
                let agent = (sent * publishers + index) % agents
                let payload = stream.payload(agent: agent, variant: (sent / agents) % TelemetryStream.variants, sequence: sequenceBase + UInt64(sent))
                try await client.publish(stream.topics[agent], payload: payload, qos: .atMostOnce, properties: properties)
                sent += 1
                counts.published.add(1, ordering: .relaxed)
                if sent % Self.markerInterval == 0 {
                    try await marker?.value
                    marker = Task { [client] in try await client.publish(markerTopic, payload: Data("m".utf8), qos: .atLeastOnce) }
                }
            }
            if rate > 0 {
                try await Task.sleep(for: .milliseconds(1))
            } else {
                await Task.yield()
            }
        }
        try await marker?.value
    }
}

extension Double {
    fileprivate func rounded(toPlaces places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (self * scale).rounded() / scale
    }
}
