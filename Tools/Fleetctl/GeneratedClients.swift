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
            let data = try ContractCoding.encoder.encode(value)
            console.printJSON(try ContractCoding.decoder.decode(JSONValue.self, from: data))
        } else {
            console.print(render(value))
        }
    }
}
