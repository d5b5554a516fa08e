import FleetContract
import Foundation
package import Hummingbird
package import Logging
package import MQTT
import Metrics
import PostgresNIO
package import Prometheus
package import ServiceLifecycle

/// The parts every service is built from, handed to a service's own setup so it can add its
/// routes, readiness checks and long-running work.
package struct ServiceContext: Sendable {
    package let configuration: ServiceConfiguration
    package let logger: Logger
    package let mqtt: MQTTClient
    /// The database and its migration state, for services that own a schema.
    package let database: DatabaseService?
    /// The registry `/metrics` serves, for figures whose series come and go (the aggregator's
    /// per-deployment gauges); fixed metrics go through swift-metrics.
    package let metrics: PrometheusCollectorRegistry
}

/// What a service adds to the runtime: more routes and readiness checks, and its own services
/// (run after the broker and database clients, stopped before them).
package struct ServiceParts: Sendable {
    package var services: [any Service] = []
    package var readinessChecks: [ReadinessCheck] = []
    package var routes: @Sendable (Router<BasicRequestContext>) throws -> Void = { _ in }
    /// Which role each of the service's routes needs, beyond reads (viewer) and writes (operator).
    package var accessRules = APIAccessRules()

    package init() {}
}

/// Builds and runs a ModelFleet service: configuration from the environment, logging, metrics,
/// the MQTT client, the database with its migrations, `/health`, `/ready`, `/metrics`, and
/// graceful shutdown on SIGTERM and SIGINT.
package enum ServiceMain {
    /// Runs the service to completion and exits the process: 0 after a graceful shutdown, 1 when
    /// the configuration is bad or the service fails.
    package static func run(
        _ descriptor: ServiceDescriptor,
        setup: @Sendable (ServiceContext) throws -> ServiceParts = { _ in ServiceParts() }
    ) async -> Never {
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration(service: descriptor, environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("\(descriptor.name): configuration error: \(error)\n".utf8))
            exit(1)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = configuration.logLevel
            return handler
        }
        let metrics = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))
        let logger = Logger(label: descriptor.name)
        do {
            let application = try buildApplication(descriptor, configuration: configuration, metrics: metrics, logger: logger, setup: setup)
            try await application.runService()
            logger.info("stopped")
            exit(0)
        } catch {
            logger.critical("service failed", metadata: ["error": "\(String(reflecting: error))"])
            exit(1)
        }
    }

    /// The application with every part wired, not yet running.
    package static func buildApplication(
        _ descriptor: ServiceDescriptor,
        configuration: ServiceConfiguration,
        metrics: PrometheusCollectorRegistry,
        logger: Logger,
        setup: @Sendable (ServiceContext) throws -> ServiceParts
    ) throws -> some ApplicationProtocol {
        var logger = logger
        logger[metadataKey: "instance"] = "\(configuration.instanceID)"

        let mqtt = try MQTTClient(configuration: mqttConfiguration(descriptor, configuration), logger: logger)
        var services: [any Service] = [mqtt]
        var checks = [
            ReadinessCheck(name: "mqtt") {
                let state = mqtt.connectionState
                return (state.isConnected, state.description)
            }
        ]

        var database: DatabaseService?
        if let schema = descriptor.schema, let databaseConfiguration = configuration.database {
            let client = PostgresClient(configuration: databaseConfiguration, backgroundLogger: logger)
            let service = try DatabaseService(client: client, schema: schema, logger: logger)
            services += [client, service]
            checks.append(
                ReadinessCheck(name: "database") {
                    let status = service.status
                    return (status == .reachable, status.description)
                })
            database = service
        }

        let parts = try setup(ServiceContext(configuration: configuration, logger: logger, mqtt: mqtt, database: database, metrics: metrics))
        services += parts.services
        checks += parts.readinessChecks

        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        if let api = configuration.api {
            let revoked = RevokedAPIKeys()
            services.append(APIKeyRevocationFollower(mqtt: mqtt, revoked: revoked, logger: logger))
            router.add(
                middleware: APIKeyMiddleware(
                    signer: api.signer, revoked: revoked, rules: parts.accessRules, limiter: APIRateLimiter(rate: api.rate, burst: api.burst),
                    scrapeToken: api.scrapeToken))
        } else {
            logger.warning("MODELFLEET_API_AUTH=off: every REST endpoint is open to anyone who reaches it, without a key")
        }
        OperationsEndpoints(
            service: descriptor.name,
            instance: configuration.instanceID,
            version: descriptor.version,
            checks: checks,
            metrics: metrics
        ).addRoutes(to: router)
        try parts.routes(router)

        logger.info(
            "starting",
            metadata: [
                "version": "\(descriptor.version)",
                "http": "\(configuration.http.host):\(configuration.http.port)",
                "mqtt": "\(configuration.mqtt.host):\(configuration.mqtt.port)",
            ]
        )
        // The HTTP server is added last by Hummingbird, so it stops first; the MQTT client is
        // first, so it stops last and the others can still publish while they drain.
        return Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.http.host, port: configuration.http.port),
                serverName: descriptor.name
            ),
            services: services,
            logger: logger
        )
    }

    /// The broker connection with the service's presence: "online" on every connect, "offline,
    /// stopped" before a clean disconnect, and "offline, connection lost" as the last will.
    static func mqttConfiguration(_ descriptor: ServiceDescriptor, _ configuration: ServiceConfiguration) throws -> MQTTConfiguration {
        var mqtt = configuration.mqtt
        let topic = Topic.serviceStatus(
            service: try TopicLevel(descriptor.name),
            instance: try TopicLevel(configuration.instanceID)
        ).path
        let startedAt = Date()
        let status = { @Sendable (state: ServiceStatus.State, reason: ServiceStatus.Reason) -> MQTTOutgoingMessage in
            let payload = ServiceStatus(
                service: descriptor.name,
                instance: configuration.instanceID,
                state: state,
                reason: reason,
                version: descriptor.version,
                startedAt: startedAt
            )
            // Encoding a fixed struct of strings and dates cannot fail.
            let data = (try? Envelope(payload: payload).encoded()) ?? Data()
            // An offline status expires after a day, so the retained statuses of instances that
            // never come back (old pods, old PIDs) do not pile up on the broker.
            let properties = MQTTProperties(contentType: "application/json", messageExpiryInterval: state == .offline ? 86_400 : nil)
            return MQTTOutgoingMessage(topic: topic, payload: data, qos: .atLeastOnce, retain: true, properties: properties)
        }
        mqtt.lastWill = status(.offline, .connectionLost)
        mqtt.birth = { [status(.online, .started)] }
        mqtt.farewell = { status(.offline, .stopped) }
        return mqtt
    }
}
