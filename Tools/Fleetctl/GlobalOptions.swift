import ArgumentParser
import AsyncHTTPClient
import Foundation

/// How results are printed: tables for people, JSON for scripts.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json
}

/// The options every subcommand takes: where the services are and how to print.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("registry"), help: "The registry's URL (default: $FLEETCTL_REGISTRY_URL, else \(Endpoints.defaultRegistry)).")
    var registryURL: String?

    @Option(
        name: .customLong("orchestrator"),
        help: "The orchestrator's URL (default: $FLEETCTL_ORCHESTRATOR_URL, else \(Endpoints.defaultOrchestrator)).")
    var orchestratorURL: String?

    @Option(
        name: .customLong("metrics"),
        help: "The metrics-aggregator's URL (default: $FLEETCTL_METRICS_URL, else \(Endpoints.defaultMetrics)).")
    var metricsURL: String?

    @Option(
        name: .customLong("autoscaler"),
        help: "The autoscaler's URL (default: $FLEETCTL_AUTOSCALER_URL, else \(Endpoints.defaultAutoscaler)).")
    var autoscalerURL: String?

    @Option(
        name: .customLong("load-balancer"),
        help: "The load balancer's URL (default: $FLEETCTL_LOAD_BALANCER_URL, else \(Endpoints.defaultLoadBalancer)).")
    var loadBalancerURL: String?

    @Option(help: "table (for people) or json (for scripts).")
    var output: OutputFormat = .table

    @Option(
        help: """
            A file holding the API key (default: $FLEETCTL_API_KEY, else the file $FLEETCTL_API_KEY_FILE, else \
            ~/.config/modelfleet/api-key, which must be readable by its owner only).
            """)
    var apiKeyFile: String?

    func validate() throws {
        _ = try endpoints()
    }

    /// The services' base URLs: the flag, else the environment, else the local default.
    func endpoints(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Endpoints {
        Endpoints(
            registry: try Endpoints.baseURL(
                registryURL ?? environment["FLEETCTL_REGISTRY_URL"] ?? Endpoints.defaultRegistry, option: "--registry"),
            orchestrator: try Endpoints.baseURL(
                orchestratorURL ?? environment["FLEETCTL_ORCHESTRATOR_URL"] ?? Endpoints.defaultOrchestrator, option: "--orchestrator"),
            metrics: try Endpoints.baseURL(metricsURL ?? environment["FLEETCTL_METRICS_URL"] ?? Endpoints.defaultMetrics, option: "--metrics"),
            autoscaler: try Endpoints.baseURL(
                autoscalerURL ?? environment["FLEETCTL_AUTOSCALER_URL"] ?? Endpoints.defaultAutoscaler, option: "--autoscaler"),
            loadBalancer: try Endpoints.baseURL(
                loadBalancerURL ?? environment["FLEETCTL_LOAD_BALANCER_URL"] ?? Endpoints.defaultLoadBalancer, option: "--load-balancer")
        )
    }

    /// Runs a command's body with clients for both services and turns its outcome into the exit
    /// status: errors the tool understands are printed as `error: …` (exit 2); the HTTP client is
    /// shut down whatever happens, as AsyncHTTPClient requires.
    func run(_ body: (CommandContext) async throws -> ExitCode) async throws {
        let endpoints = try endpoints()
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(120))
        // Fail at once when a service is not listening, instead of retrying until the request's
        // deadline: an operator wants "unreachable" now, not after two minutes.
        configuration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let console = Console()
        let key = try APIKeySource.key(option: apiKeyFile)
        let context = CommandContext(
            registry: ServiceClient(name: "registry", baseURL: endpoints.registry, http: http, apiKey: key),
            orchestrator: ServiceClient(name: "orchestrator", baseURL: endpoints.orchestrator, http: http, apiKey: key),
            metrics: ServiceClient(name: "metrics-aggregator", baseURL: endpoints.metrics, http: http, apiKey: key),
            autoscaler: ServiceClient(name: "autoscaler", baseURL: endpoints.autoscaler, http: http, apiKey: key),
            loadBalancer: ServiceClient(name: "load-balancer", baseURL: endpoints.loadBalancer, http: http, apiKey: key),
            output: output,
            console: console
        )
        let outcome: Result<ExitCode, any Error>
        do {
            outcome = .success(try await body(context))
        } catch {
            outcome = .failure(error)
        }
        try? await http.shutdown()
        switch outcome {
        case .success(let status):
            if status != .success { throw status }
        case .failure(let error as FleetctlError):
            console.error("error: \(error.description)")
            if let hint = error.hint { console.error("hint: \(hint)") }
            throw ExitStatus.error
        case .failure(let error):
            throw error
        }
    }
}

/// The base URLs of the services, without a trailing slash.
struct Endpoints: Sendable, Equatable {
    static let defaultRegistry = "http://127.0.0.1:8081"
    static let defaultOrchestrator = "http://127.0.0.1:8082"
    static let defaultMetrics = "http://127.0.0.1:8084"
    static let defaultAutoscaler = "http://127.0.0.1:8083"
    static let defaultLoadBalancer = "http://127.0.0.1:8087"

    var registry: String
    var orchestrator: String
    var metrics: String
    var autoscaler: String
    var loadBalancer: String

    /// Checks that `text` is an http(s) URL with a host, and drops a trailing slash.
    static func baseURL(_ text: String, option: String) throws -> String {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty
        else {
            throw ValidationError("\(option): '\(text)' is not an http:// or https:// URL")
        }
        var base = text
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }
}
