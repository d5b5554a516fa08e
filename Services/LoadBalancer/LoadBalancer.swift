import FleetContract
import Foundation
import Hummingbird
import LoadBalancerContract
import Metrics
import OpenAPIRuntime
import ServiceRuntime

/// The `load-balancer` executable: each deployment's endpoint on HAProxy (its child), kept in
/// step with the deployments' views the orchestrator publishes (docs/load-balancer.md).
@main
enum LoadBalancerMain {
    static func main() async {
        await ServiceMain.run(.loadBalancer, setup: buildLoadBalancer)
    }
}

extension ServiceDescriptor {
    static let loadBalancer = ServiceDescriptor(name: "load-balancer", defaultHTTPPort: 8087)
}

/// The load-balancer's own settings, from the environment (docs/configuration.md).
struct LoadBalancerSettings: Sendable {
    var haproxy: String
    var config: HAProxyConfig.Settings
    var publicURL: String

    init(environment: [String: String], instance: String) throws(ConfigurationError) {
        let env = EnvironmentReader(environment)
        haproxy = env["MODELFLEET_LB_HAPROXY"] ?? "haproxy"
        let directory = env["MODELFLEET_LB_STATE_DIR"] ?? "\(NSTemporaryDirectory())modelfleet-lb-\(instance)"
        var config = HAProxyConfig.Settings(directory: directory)
        config.trafficHost = env["MODELFLEET_LB_TRAFFIC_HOST"] ?? "0.0.0.0"
        config.trafficPort = Int(try env.number("MODELFLEET_LB_TRAFFIC_PORT", default: 8088, in: 1...65_535))
        config.adminHost = env["MODELFLEET_LB_ADMIN_HOST"] ?? "127.0.0.1"
        config.adminPort = Int(try env.number("MODELFLEET_LB_ADMIN_PORT", default: 8089, in: 1...65_535))
        if env["MODELFLEET_LB_HAPROXY_THREADS"] != nil {
            config.threads = Int(try env.number("MODELFLEET_LB_HAPROXY_THREADS", default: 1, in: 1...64))
        }
        config.cookieKey = env["MODELFLEET_LB_COOKIE_KEY"] ?? "modelfleet"
        guard config.cookieKey.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw ConfigurationError(variable: "MODELFLEET_LB_COOKIE_KEY", reason: "letters, digits, '-' and '_' only")
        }
        guard config.socketPath.utf8.count < 100 else {
            throw ConfigurationError(variable: "MODELFLEET_LB_STATE_DIR", reason: "'\(directory)' is too long for HAProxy's socket path")
        }
        self.config = config
        let host = config.trafficHost == "0.0.0.0" ? "127.0.0.1" : config.trafficHost
        publicURL = (env["MODELFLEET_LB_PUBLIC_URL"] ?? "http://\(host):\(config.trafficPort)").trimmingCharacters(
            in: CharacterSet(charactersIn: "/"))
    }
}

/// Wires the load-balancer's parts onto the runtime.
func buildLoadBalancer(_ context: ServiceContext) throws -> ServiceParts {
    let settings = try LoadBalancerSettings(environment: ProcessInfo.processInfo.environment, instance: context.configuration.instanceID)
    let haproxy = HAProxy(executable: settings.haproxy, settings: settings.config, logger: context.logger)
    let balancer = Balancer(
        mqtt: context.mqtt, haproxy: haproxy, publicURL: settings.publicURL, instance: context.configuration.instanceID, logger: context.logger)
    var parts = ServiceParts()
    parts.services = [balancer]
    parts.readinessChecks = [
        ReadinessCheck(name: "haproxy") { haproxy.isRunning ? (true, "running") : (false, "not running") }
    ]
    parts.routes = { router in try LoadBalancerAPI(balancer: balancer).addRoutes(to: router) }
    return parts
}

/// `GET /v1/endpoints` (openapi.yaml, generated into LoadBalancerContract): what this replica serves.
struct LoadBalancerAPI: APIProtocol {
    let balancer: any EndpointSource

    func addRoutes(to router: Router<BasicRequestContext>) throws {
        try router.addContract(document: LoadBalancerOpenAPI.text) { try registerHandlers(on: $0, configuration: $1, middlewares: $2) }
    }

    func listEndpoints(_ input: Operations.ListEndpoints.Input) async throws -> Operations.ListEndpoints.Output {
        .ok(.init(body: .json(.init(items: balancer.endpoints()))))
    }

    func getEndpoint(_ input: Operations.GetEndpoint.Input) async throws -> Operations.GetEndpoint.Output {
        let name = input.path.deployment
        guard let endpoint = balancer.endpoints().first(where: { $0.deployment == name }) else {
            throw APIError.notFound("this load balancer serves no deployment named '\(name)'")
        }
        return .ok(.init(body: .json(endpoint)))
    }
}

/// What the REST API reads: the ``Balancer``, or endpoints the handler tests give.
protocol EndpointSource: Sendable {
    func endpoints() -> [Components.Schemas.Endpoint]
}

extension Balancer: EndpointSource {}

/// The load-balancer's own metrics, each name spelled once (docs/load-balancer.md).
enum LoadBalancerMetrics {
    static var reloads: Counter { Counter(label: "load_balancer_reloads_total") }
    static var runtimeCommands: Counter { Counter(label: "load_balancer_runtime_commands_total") }
    static var haproxyRestarts: Counter { Counter(label: "load_balancer_haproxy_restarts_total") }
    static var syncFailures: Counter { Counter(label: "load_balancer_sync_failures_total") }
    static var invalidViews: Counter { Counter(label: "load_balancer_invalid_views_total") }
}
