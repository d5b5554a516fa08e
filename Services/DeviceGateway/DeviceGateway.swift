import DeviceProtocol
import Foundation
import ServiceRuntime

/// The `device-gateway` executable: the only service on the agents' topics. It validates what
/// agents send and forwards it as internal events, keeps their presence, and publishes their
/// desired states (`docs/device-protocol.md`).
@main
enum DeviceGatewayMain {
    static func main() async {
        await ServiceMain.run(.deviceGateway, setup: buildGateway)
    }
}

extension ServiceDescriptor {
    static let deviceGateway = ServiceDescriptor(name: "device-gateway", defaultHTTPPort: 8085)
}

/// Wires the gateway's parts onto the runtime.
func buildGateway(_ context: ServiceContext) throws -> ServiceParts {
    let configuration = try GatewayConfiguration(environment: ProcessInfo.processInfo.environment)
    // Compiling the schemas now makes a broken build fail at start, not at the first message.
    let validator = AgentMessageValidator(schemas: .shared)
    let state = GatewayState(instance: context.configuration.instanceID, limits: configuration.limits)
    let api = GatewayAPI(state: state)
    var parts = ServiceParts()
    parts.services = [
        AgentRelay(mqtt: context.mqtt, state: state, validator: validator, logger: context.logger),
        AgentRequests(mqtt: context.mqtt, state: state, validator: validator, logger: context.logger),
    ]
    parts.readinessChecks = [state.subscribed.readinessCheck(name: "agent-subscriptions")]
    parts.routes = { router in api.addRoutes(to: router) }
    return parts
}
