import AsyncHTTPClient
import DeviceProtocol
import FleetContract
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The built-in runtime's model server: one Hummingbird server per instance, on a port the
/// kernel picks. `GET <health path>` answers 200 once ready (503 before); `POST /v1/infer` runs
/// a synthetic model over its body, with work in proportion to the body's size. A test or a
/// demo shapes it through the deployment's environment (``Knobs``), and one instance at a time
/// through `PUT /sim` (`{"latency_ms": 500, "error_rate": 0.5, "healthy": false}`).
struct BuiltInModelServer: Sendable {
    /// What the deployment's environment asks of the built-in server.
    struct Knobs: Sendable, Equatable {
        /// Added to every inference (`SIM_LATENCY_MS`, 0 to 60000).
        var latencyMilliseconds: Double = 0
        /// The share of inferences that answer 500 (`SIM_ERROR_RATE`, 0 to 1).
        var errorRate: Double = 0
        /// How long the health check answers 503 after the server listens (`SIM_STARTUP_SECONDS`, 0 to 3600).
        var startupSeconds: Double = 0
        /// Whether the health check answers 200 once ready (only `PUT /sim` changes it).
        var healthy = true

        init() {}

        /// `version` is the instance's model version: `SIM_ERROR_VERSION` and `SIM_LATENCY_VERSION`
        /// limit the error rate and the added latency to the instances of that version, so that one
        /// version of a canary update can be made to fail or to be slow.
        init(environment: [String: String], version: String) throws {
            func number(_ name: String, in range: ClosedRange<Double>) throws -> Double? {
                guard let text = environment[name] else { return nil }
                guard let value = Double(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                    throw InstanceFailure("environment variable \(name)='\(text)' must be a number from \(range.lowerBound) to \(range.upperBound)")
                }
                return value
            }
            latencyMilliseconds = try number("SIM_LATENCY_MS", in: 0...60_000) ?? 0
            errorRate = try number("SIM_ERROR_RATE", in: 0...1) ?? 0
            if let failing = environment["SIM_ERROR_VERSION"], failing != version { errorRate = 0 }
            if let slow = environment["SIM_LATENCY_VERSION"], slow != version { latencyMilliseconds = 0 }
            startupSeconds = try number("SIM_STARTUP_SECONDS", in: 0...3_600) ?? 0
        }
    }

    let definition: DesiredState.Instance
    let instance: ManagedInstance
    private let ready = ReadyFlag()
    private let knobs: KnobBox

    init(definition: DesiredState.Instance, knobs: Knobs, instance: ManagedInstance) {
        self.definition = definition
        self.knobs = KnobBox(knobs)
        self.instance = instance
    }

    /// The knobs, changed at run time by `PUT /sim`.
    final class KnobBox: Sendable {
        private let value: Mutex<Knobs>
        init(_ knobs: Knobs) { value = Mutex(knobs) }
        var current: Knobs { value.withLock { $0 } }
        func update(_ body: (inout Knobs) -> Void) { value.withLock { body(&$0) } }
    }

    /// `PUT /sim`'s body: the knobs to change for this instance alone.
    private struct KnobChange: Decodable {
        var latencyMs: Double?
        var errorRate: Double?
        var healthy: Bool?

        enum CodingKeys: String, CodingKey {
            case latencyMs = "latency_ms"
            case errorRate = "error_rate"
            case healthy
        }
    }

    final class ReadyFlag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
        func set() { value.store(true, ordering: .releasing) }
    }

    func markReady() { ready.set() }

    /// The largest body `/v1/infer` takes.
    static let maximumInput = 1 << 20

    /// Serves until cancelled; `running` is called with the port once the server listens.
    func run(host: String, running: @escaping @Sendable (Int) async -> Void) async throws {
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        // Its own lines go to the instance's log; Hummingbird's, at the stop of a cancelled server
        // ("Waiting on child channel: CancellationError()"), say nothing wrong.
        var logger = Logger(label: "modelfleet.instance")
        logger.logLevel = .critical
        let application = Application(
            router: router(),
            configuration: ApplicationConfiguration(address: .hostname(host, port: 0), serverName: "modelfleet-builtin"),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            },
            logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            group.addTask {
                for await port in ports {
                    await running(port)
                }
                // Serving goes on until the instance is stopped.
                try await Task.sleep(for: .seconds(365 * 86_400))
            }
            defer { group.cancelAll() }
            _ = try await group.next()
        }
    }

    private struct Answer: ResponseEncodable {
        var instanceID: String
        var model: String
        var version: String
        var inputBytes: Int
        var score: Double
        var latencyMs: Double

        private enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case model, version, score
            case inputBytes = "input_bytes"
            case latencyMs = "latency_ms"
        }
    }

    private struct Problem: ResponseEncodable {
        var error: String
    }

    private func router() -> Router<BasicRequestContext> {
        let router = Router()
        let (definition, knobs, instance, ready) = (self.definition, self.knobs, self.instance, self.ready)
        router.get(RouterPath(definition.healthCheckPath)) { _, _ -> Response in
            let (status, text): (HTTPResponse.Status, String)
            if !ready.isSet {
                (status, text) = (.serviceUnavailable, #"{"status":"starting"}"#)
            } else if instance.isStopping {
                (status, text) = (.serviceUnavailable, #"{"status":"stopping"}"#)
            } else if !knobs.current.healthy {
                (status, text) = (.serviceUnavailable, #"{"status":"unhealthy"}"#)
            } else {
                (status, text) = (.ok, #"{"status":"ready"}"#)
            }
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.put("/sim") { request, context -> Response in
            let change: KnobChange
            do {
                change = try await request.decode(as: KnobChange.self, context: context)
            } catch {
                return try Self.json(Problem(error: "a JSON object of latency_ms, error_rate and healthy"), status: .badRequest, request, context)
            }
            if let latency = change.latencyMs, !(0...60_000).contains(latency) {
                return try Self.json(Problem(error: "latency_ms must be 0 to 60000"), status: .badRequest, request, context)
            }
            if let rate = change.errorRate, !(0...1).contains(rate) {
                return try Self.json(Problem(error: "error_rate must be 0 to 1"), status: .badRequest, request, context)
            }
            knobs.update { knobs in
                if let latency = change.latencyMs { knobs.latencyMilliseconds = latency }
                if let rate = change.errorRate { knobs.errorRate = rate }
                if let healthy = change.healthy { knobs.healthy = healthy }
            }
            let now = knobs.current
            instance.log("PUT /sim: latency \(now.latencyMilliseconds) ms, error rate \(now.errorRate), healthy \(now.healthy)")
            return Response(status: .noContent)
        }
        router.post("/v1/infer") { request, context -> Response in
            let clock = ContinuousClock()
            let started = clock.now
            instance.meter.begin()
            // Ended on every path, a cancelled sleep included, so that nothing stays in flight.
            var failed = false
            defer { instance.meter.record(latency: clock.now - started, failed: failed) }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: Self.maximumInput)
            } catch {
                instance.log("POST /v1/infer 413: the body is over \(Self.maximumInput) bytes")
                return try Self.json(Problem(error: "the input is over \(Self.maximumInput) bytes"), status: .contentTooLarge, request, context)
            }
            let knobs = knobs.current
            let score = Self.infer(body.readableBytesView)
            if knobs.latencyMilliseconds > 0 { try await Task.sleep(for: .milliseconds(Int64(knobs.latencyMilliseconds))) }
            let elapsed = clock.now - started
            let milliseconds = Double(elapsed.components.seconds) * 1_000 + Double(elapsed.components.attoseconds) / 1e15
            if knobs.errorRate > 0, Double.random(in: 0..<1) < knobs.errorRate {
                failed = true
                instance.log("POST /v1/infer 500 in \(String(format: "%.2f", milliseconds)) ms: injected failure (SIM_ERROR_RATE)")
                return try Self.json(Problem(error: "inference failed (injected by SIM_ERROR_RATE)"), status: .internalServerError, request, context)
            }
            instance.log("POST /v1/infer 200 in \(String(format: "%.2f", milliseconds)) ms, \(body.readableBytes) bytes")
            return try Self.json(
                Answer(
                    instanceID: definition.instanceID, model: definition.modelName, version: definition.version, inputBytes: body.readableBytes,
                    score: score, latencyMs: milliseconds), status: .ok, request, context)
        }
        return router
    }

    private static func json(
        _ value: some ResponseEncodable, status: HTTPResponse.Status, _ request: Request, _ context: BasicRequestContext
    ) throws
        -> Response
    {
        var response = try value.response(from: request, context: context)
        response.status = status
        return response
    }

    /// The synthetic model: 64 rounds of mixing per input byte (at least one round), a score
    /// from 0 to 1 that depends on every byte.
    static func infer(_ bytes: ByteBufferView) -> Double {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        for _ in 0..<64 {
            for byte in bytes { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
            state = (state ^ (state >> 29)) &* 0xbf58_476d_1ce4_e5b9
        }
        return Double(state >> 11) / Double(1 << 53)
    }
}

/// Whether an instance answers its health check with a 2xx within a second.
enum HealthProbe {
    static func answers(host: String, port: Int, path: String) async -> Bool {
        let request = HTTPClientRequest(url: "http://\(host):\(port)\(path)")
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(1)) else { return false }
        _ = try? await response.body.collect(upTo: 65_536)
        return (200..<300).contains(response.status.code)
    }
}
