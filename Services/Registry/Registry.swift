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
    let api = RegistryAPI(store: store, events: events, orchestrator: OrchestratorClient(mqtt: context.mqtt))
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
    parts.routes = { router in api.addRoutes(to: router) }
    return parts
}
