/// What distinguishes one service executable from another for the runtime.
package struct ServiceDescriptor: Sendable {
    /// The executable's name, also its MQTT client id prefix and its metrics' `service` label.
    package var name: String
    package var version: String
    /// The HTTP port when `MODELFLEET_HTTP_PORT` is unset.
    package var defaultHTTPPort: Int
    /// The PostgreSQL schema this service owns, for the services that keep data.
    package var schema: DatabaseSchema?

    package init(name: String, version: String = ModelFleetVersion.current, defaultHTTPPort: Int, schema: DatabaseSchema? = nil) {
        self.name = name
        self.version = version
        self.defaultHTTPPort = defaultHTTPPort
        self.schema = schema
    }
}

/// The version every executable of this build reports.
package enum ModelFleetVersion {
    package static let current = "0.1.0"
}
