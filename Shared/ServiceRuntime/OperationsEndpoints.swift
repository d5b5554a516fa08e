package import Foundation
package import Hummingbird
package import Prometheus
import Synchronization

/// One thing `/ready` checks: its name in the answer, and whether it is up with a word on why.
package struct ReadinessCheck: Sendable {
    package var name: String
    package var probe: @Sendable () -> (ready: Bool, detail: String)

    package init(name: String, probe: @escaping @Sendable () -> (ready: Bool, detail: String)) {
        self.name = name
        self.probe = probe
    }
}

/// `GET /health`, `GET /ready` and `GET /metrics`, which every service serves.
/// Whether a service's subscriptions are in place, for a readiness check: messages published on a
/// topic before its subscriber is there are not kept for it.
package final class SubscriptionFlag: Sendable {
    private let value = Atomic<Bool>(false)

    package init() {}

    package func set(_ subscribed: Bool) { value.store(subscribed, ordering: .releasing) }

    package var isSet: Bool { value.load(ordering: .acquiring) }

    package func readinessCheck(name: String) -> ReadinessCheck {
        ReadinessCheck(name: name) { [self] in isSet ? (true, "subscribed") : (false, "not subscribed yet") }
    }
}

package struct OperationsEndpoints: Sendable {
    package var service: String
    package var instance: String
    package var version: String
    package var checks: [ReadinessCheck]
    package var metrics: PrometheusCollectorRegistry

    package init(service: String, instance: String, version: String, checks: [ReadinessCheck], metrics: PrometheusCollectorRegistry) {
        self.service = service
        self.instance = instance
        self.version = version
        self.checks = checks
        self.metrics = metrics
    }

    package func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/health") { _, _ in
            JSONResponse(["status": "alive", "service": service, "instance": instance, "version": version])
        }
        router.get("/ready") { _, _ in
            let results = checks.map { check in (check.name, check.probe()) }
            let ready = results.allSatisfy { $0.1.ready }
            let body = ReadinessBody(
                status: ready ? "ready" : "not ready",
                checks: Dictionary(uniqueKeysWithValues: results.map { ($0.0, ReadinessBody.Check(ready: $0.1.ready, detail: $0.1.detail)) })
            )
            return JSONResponse(body, status: ready ? .ok : .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer()))
            )
        }
    }

    private struct ReadinessBody: Encodable {
        struct Check: Encodable {
            var ready: Bool
            var detail: String
        }

        var status: String
        var checks: [String: Check]
    }
}

/// A JSON response with a status; the one way the runtime writes JSON bodies.
package struct JSONResponse<Body: Encodable & Sendable>: ResponseGenerator {
    package var body: Body
    package var status: HTTPResponse.Status
    /// Nil for the plain encoder (sorted keys); the APIs pass the contract's, for its date format.
    package var encoder: JSONEncoder?

    package init(_ body: Body, status: HTTPResponse.Status = .ok, encoder: JSONEncoder? = nil) {
        self.body = body
        self.status = status
        self.encoder = encoder
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        let encoder =
            self.encoder
            ?? {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                return encoder
            }()
        let data = try encoder.encode(body)
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
