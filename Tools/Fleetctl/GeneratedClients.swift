import ArgumentParser
import AsyncHTTPClient
import AutoscalerContract
import FleetContract
import Foundation
import HTTPTypes
import LoadBalancerContract
import MetricsAggregatorContract
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime
import OpenAPISupport
import OrchestratorContract
import RegistryContract

/// The services' generated clients (swift-openapi-generator, from each `openapi.yaml`), over the
/// tool's HTTP client, with its key and its errors: an answer that is not 2xx becomes the
/// service's ``FleetctlError`` before the generated code reads it, so a command reads only the
/// success it asked for.
extension ServiceClient {
    /// The metrics-aggregator's API (Shared/Contracts/MetricsAggregatorContract).
    var metricsAPI: MetricsAggregatorContract.Client {
        get throws { try MetricsAggregatorContract.Client(serverURL: url, configuration: .contract, transport: transport, middlewares: middlewares) }
    }

    /// The autoscaler's API (Shared/Contracts/AutoscalerContract).
    var autoscalerAPI: AutoscalerContract.Client {
        get throws { try AutoscalerContract.Client(serverURL: url, configuration: .contract, transport: transport, middlewares: middlewares) }
    }

    /// The load balancer's API (Shared/Contracts/LoadBalancerContract).
    var loadBalancerAPI: LoadBalancerContract.Client {
        get throws { try LoadBalancerContract.Client(serverURL: url, configuration: .contract, transport: transport, middlewares: middlewares) }
    }

    /// The registry's API (Shared/Contracts/RegistryContract): the catalogue, sites, servers,
    /// groups, keys and enrolments. Its device routes are plain (``RegistrySchema/Device`` over
    /// ``send(_:_:query:body:)``).
    var registryAPI: RegistryContract.Client {
        get throws { try RegistryContract.Client(serverURL: url, configuration: .contract, transport: transport, middlewares: middlewares) }
    }

    /// The orchestrator's API (Shared/Contracts/OrchestratorContract): pipelines, operations and
    /// deployments. A deployment's answer is its JSON (the contract maps `Deployment` to
    /// `JSONValue` to keep its nulls), read as ``DeploymentSummary``.
    var orchestratorAPI: OrchestratorContract.Client {
        get throws { try OrchestratorContract.Client(serverURL: url, configuration: .contract, transport: transport, middlewares: middlewares) }
    }

    private var url: URL {
        get throws {
            guard let url = URL(string: baseURL) else { throw FleetctlError.unreachable(service: name, url: baseURL, reason: "not a URL") }
            return url
        }
    }

    private var transport: AsyncHTTPClientTransport { AsyncHTTPClientTransport(configuration: .init(client: http, timeout: .seconds(120))) }
    private var middlewares: [any ClientMiddleware] { [GeneratedClientMiddleware(service: self)] }

    /// Runs one call of a generated client, turning what the transport or the answer's decoding
    /// threw into the tool's errors.
    func call<Value>(_ body: () async throws -> Value) async throws -> Value {
        do {
            return try await body()
        } catch let error as ClientError {
            if let refusal = error.underlyingError as? FleetctlError { throw refusal }
            if error.response == nil { throw FleetctlError.unreachable(service: name, url: baseURL, reason: Self.reason(error.underlyingError)) }
            throw FleetctlError.unexpectedResponse(service: name, detail: "cannot read its answer to \(error.operationID): \(error.underlyingError)")
        }
    }
}

/// The registry's schemas, generated from its contract.
typealias RegistrySchema = RegistryContract.Components.Schemas

extension ServiceClient {
    /// Every page of a list, following the cursors: `page` reads the page after `cursor` (nil: the
    /// first), with a generated client or not.
    func allPages<Item>(_ what: String, _ page: (_ cursor: String?) async throws -> (items: [Item], next: String?)) async throws -> [Item] {
        var items: [Item] = []
        var cursor: String?
        var seen: Set<String> = []
        repeat {
            let read = try await call { try await page(cursor) }
            items += read.items
            cursor = read.next
            // A cursor that comes back twice would loop for ever; the API promises stable cursors.
            if let next = cursor, !seen.insert(next).inserted {
                throw FleetctlError.unexpectedResponse(service: name, detail: "\(what) gave the cursor \(next) twice")
            }
        } while cursor != nil
        return items
    }
}

/// Adds the key, and reads a refusal (4xx, 5xx) as the service's error body.
struct GeneratedClientMiddleware: ClientMiddleware {
    let service: ServiceClient

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.userAgent] = "fleetctl"
        if let key = service.apiKey { request.headerFields[.authorization] = "Bearer \(key)" }
        let (response, responseBody) = try await next(request, body, baseURL)
        guard response.status.kind != .successful else { return (response, responseBody) }
        var bytes = Data()
        if let responseBody { bytes = try await Data(collecting: responseBody, upTo: 1 << 20) }
        throw service.serviceError(status: response.status.code, body: bytes)
    }
}

extension CommandContext {
    /// Prints one object a generated client read: as JSON, or as `render` tells.
    func printObject<Value: Encodable>(_ value: Value, render: (Value) -> String) throws {
        if output == .json {
            try printJSON(value)
        } else {
            console.print(render(value))
        }
    }

    /// Prints `value` as its JSON.
    func printJSON(_ value: some Encodable) throws {
        console.printJSON(try ContractCoding.recast(value, as: JSONValue.self))
    }

    /// Prints the answer to a write, as ``printObject(_:render:)``; the command succeeded.
    func report<Value: Encodable>(_ value: Value, render: (Value) -> String) throws -> ExitCode {
        try printObject(value, render: render)
        return .success
    }
}

/// An answer a contract gives as JSON (the orchestrator's deployments, decision 92), read as the
/// tool's own type for it; what does not fit is the service's unexpected answer.
func contractAnswer<Value: Decodable>(_ json: JSONValue, as type: Value.Type = Value.self, from service: ServiceClient) throws -> Value {
    do {
        return try ContractCoding.recast(json, as: type)
    } catch {
        throw FleetctlError.unexpectedResponse(service: service.name, detail: "cannot read its JSON: \(error)")
    }
}

/// JSON the operator gave (a settings file, `--inputs`) as the contract's type for it; what does
/// not fit is named before any request (`the default settings: confidence_threshold: expected a
/// number`).
func contractValue<Value: Decodable>(_ json: JSONValue, as type: Value.Type = Value.self, what: String) throws -> Value {
    do {
        return try ContractCoding.recast(json, as: type)
    } catch let error as DecodingError {
        let problem = ContractError(decodingError: error)
        throw FleetctlError.invalidInput("\(what): \(problem.field == "(root)" ? "" : problem.field + ": ")\(problem.reason)")
    }
}

extension RegistrySchema.ModelTask: ExpressibleByArgument {}
extension RegistrySchema.ModelFormat: ExpressibleByArgument {}
