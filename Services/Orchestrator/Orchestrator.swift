import Foundation
import Logging
import ServiceRuntime

/// The `orchestrator` executable: pipeline assignment to one device or many (schema
/// `orchestrator`), delivered to the agents as desired states through an outbox, tracked to each
/// agent's report, with history, revert, retry and an audit trail; and deployments, whose
/// instances travel in the same desired states.
@main
enum OrchestratorMain {
    static func main() async {
        await ServiceMain.run(.orchestrator, setup: buildOrchestrator)
    }
}

extension ServiceDescriptor {
    static let orchestrator = ServiceDescriptor(
        name: "orchestrator", defaultHTTPPort: 8082, schema: DatabaseSchema(name: "orchestrator", migrations: OrchestratorMigrations.all))
}

/// Wires the orchestrator's parts onto the runtime.
func buildOrchestrator(_ context: ServiceContext) throws -> ServiceParts {
    guard let database = context.database else { preconditionFailure("the orchestrator's descriptor declares its schema") }
    let store = PostgresOperationStore(client: database.client, logger: context.logger)
    let registry = RegistryClient(mqtt: context.mqtt)
    let wake = OutboxPublisher.Wake()
    let viewsChanged = OutboxPublisher.Wake()
    let instancesChanged = OutboxPublisher.Wake()
    let deploymentStore = PostgresDeploymentStore(
        client: database.client, logger: context.logger, wake: wake, viewsChanged: viewsChanged, instancesChanged: instancesChanged)
    let subscribed = SubscriptionFlag()
    let bound = context.configuration.databaseStepTimeout
    let loops = LoopHealth(stuckAfter: bound)
    var parts = ServiceParts()
    parts.services = [
        OutboxPublisher(mqtt: context.mqtt, database: database, store: store, wake: wake, loops: loops, stepTimeout: bound, logger: context.logger),
        DeliveryTracker(
            mqtt: context.mqtt, database: database, store: store, deployments: deploymentStore, wake: wake, loops: loops, stepTimeout: bound,
            logger: context.logger, subscribed: subscribed),
        OrchestratorResponder(mqtt: context.mqtt, database: database, store: store, logger: context.logger),
    ]
    parts.readinessChecks = [subscribed.readinessCheck(name: "agent-reports"), loops.readinessCheck(name: "loops")]
    let deployments = DeploymentAPI(store: deploymentStore, registry: registry, logs: GatewayLogClient(mqtt: context.mqtt), logger: context.logger)
    parts.services.append(
        PendingPlacement(
            mqtt: context.mqtt, database: database, store: deploymentStore, registry: registry,
            offlineGrace: try PendingPlacement.offlineGrace(environment: ProcessInfo.processInfo.environment), logger: context.logger))
    parts.services.append(
        DeploymentViewPublisher(mqtt: context.mqtt, database: database, store: deploymentStore, wake: viewsChanged, logger: context.logger))
    let canaryFigures = CanaryFigures(mqtt: context.mqtt, logger: context.logger)
    parts.services.append(canaryFigures)
    parts.services.append(
        RestartRoller(
            database: database, store: deploymentStore, registry: registry, figures: canaryFigures, wake: instancesChanged, logger: context.logger))
    parts.services.append(
        AutoscalerLink(mqtt: context.mqtt, database: database, store: deploymentStore, registry: registry, logger: context.logger))
    let api = OrchestratorAPI(
        store: store, registry: registry, resolver: PipelineResolver(registry: registry), committed: { wake.signal() }, logger: context.logger,
        deployments: deployments)
    parts.routes = { router in try api.addRoutes(to: router) }
    // Deleting a deployment: admin; every other change: operator.
    parts.accessRules = APIAccessRules([(.delete, "/v1/deployments", .admin)])
    return parts
}
