import Foundation
import Logging
import PostgresNIO
import ServiceRuntime

/// The `registry` executable: the model catalogue and the fleet inventory (schema `registry`),
/// with a REST API for operators, the gateway's agent events applied to the inventory, and answers
/// to other services over MQTT.
@main
enum RegistryMain {
    static func main() async {
        await ServiceMain.run(.registry, setup: buildRegistry)
    }
}

extension ServiceDescriptor {
    static let registry = ServiceDescriptor(
        name: "registry", defaultHTTPPort: 8081, schema: DatabaseSchema(name: "registry", migrations: RegistryMigrations.all))
}

/// Wires the registry's parts onto the runtime.
func buildRegistry(_ context: ServiceContext) throws -> ServiceParts {
    guard let database = context.database else { preconditionFailure("the registry's descriptor declares its schema") }
    let store = PostgresRegistryRepository(client: database.client, logger: context.logger)
    let events = RegistryEvents(mqtt: context.mqtt, logger: context.logger)
    let subscribed = SubscriptionFlag()
    let loops = LoopHealth(stuckAfter: context.configuration.databaseStepTimeout)
    var parts = ServiceParts()
    // The event queue first, so that it stops last and publishes what the others queued.
    parts.services = [
        events,
        AgentEventConsumer(
            mqtt: context.mqtt, database: database, updater: InventoryUpdater(client: database.client, logger: context.logger),
            events: events, loops: loops, stepTimeout: context.configuration.databaseStepTimeout, logger: context.logger,
            subscribed: subscribed
        ),
        RegistryResponder(mqtt: context.mqtt, database: database, store: store, logger: context.logger),
    ]
    parts.readinessChecks = [subscribed.readinessCheck(name: "agent-events"), loops.readinessCheck(name: "loops")]
    let enrollments = EnrollmentAPI(
        store: EnrollmentStore(client: database.client, logger: context.logger), accounts: AgentAccounts(mqtt: context.mqtt), mqtt: context.mqtt,
        inventory: store,
        agentMQTTURL: try agentMQTTURL(context.configuration), logger: context.logger)
    var keys: APIKeysAPI?
    if let security = context.configuration.api {
        let keyStore = APIKeyStore(client: database.client, logger: context.logger)
        let revocations = APIKeyRevocationPublisher(store: keyStore, mqtt: context.mqtt)
        keys = APIKeysAPI(store: keyStore, signer: security.signer, revocations: revocations, logger: context.logger)
        parts.services.append(
            APIKeyBootstrap(
                database: database, store: keyStore, signer: security.signer, revocations: revocations,
                bootstrapFile: ProcessInfo.processInfo.environment["MODELFLEET_BOOTSTRAP_KEY_FILE"].flatMap { $0.isEmpty ? nil : $0 },
                logger: context.logger))
    }
    let api = RegistryAPI(
        store: store, events: events, orchestrator: OrchestratorClient(mqtt: context.mqtt), enrollments: enrollments, keys: keys)
    parts.routes = { router in try api.addRoutes(to: router) }
    // Keys, enrolments, the catalogue's changes and every deletion: admin.
    parts.accessRules = APIAccessRules([
        (nil, "/v1/keys", .admin), (.get, "/v1/enrollments", .viewer), (nil, "/v1/enrollments", .admin), (.post, "/v1/models", .admin),
        (.patch, "/v1/models", .admin), (.delete, "/", .admin),
    ])
    return parts
}

/// The broker address written into enrolled agents' configuration files:
/// `MODELFLEET_AGENT_MQTT_URL`, or the registry's own broker without its credentials.
private func agentMQTTURL(_ configuration: ServiceConfiguration) throws(ConfigurationError) -> String {
    if let url = ProcessInfo.processInfo.environment["MODELFLEET_AGENT_MQTT_URL"], !url.isEmpty {
        guard url.hasPrefix("mqtt://") || url.hasPrefix("mqtts://") else {
            throw ConfigurationError(variable: "MODELFLEET_AGENT_MQTT_URL", reason: "'\(url)' is not an mqtt:// or mqtts:// URL")
        }
        return url
    }
    let mqtt = configuration.mqtt
    return "\(mqtt.tls == nil ? "mqtt" : "mqtts")://\(mqtt.host):\(mqtt.port)"
}
