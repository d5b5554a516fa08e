package import Hummingbird

/// One plain route of a service's REST API: one the contract's generated server does not serve
/// (the registry's device page, the deployment edit; decision 92). Each API keeps them in one
/// table, `plainRoutes`, which both the router and the test of its OpenAPI document read, so a
/// route cannot be served without being documented.
package struct APIRoute<API: Sendable>: Sendable {
    package var method: HTTPRequest.Method
    /// In OpenAPI form: `/v1/models/{model_id}`.
    package var path: String
    package var handler: @Sendable (API, Request, BasicRequestContext) async throws -> Response

    package init(
        _ method: HTTPRequest.Method, _ path: String, _ handler: @escaping @Sendable (API, Request, BasicRequestContext) async throws -> Response
    ) {
        self.method = method
        self.path = path
        self.handler = handler
    }

    /// Hummingbird's form of the path: `{name}` becomes `:name`.
    package var routerPath: String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix("{") && segment.hasSuffix("}") ? ":" + segment.dropFirst().dropLast() : segment
        }.joined(separator: "/")
    }
}

extension Router where Context == BasicRequestContext {
    /// Serves every route of `routes` with `api`.
    package func add<API: Sendable>(_ routes: [APIRoute<API>], for api: API) {
        for route in routes {
            on(RouterPath(route.routerPath), method: route.method) { request, context in
                try await route.handler(api, request, context)
            }
        }
    }
}
