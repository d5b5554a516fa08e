import FleetContract
import Foundation
package import Logging
package import MQTT
import NIOSSL
package import PostgresNIO

/// A setting from the environment that cannot be used. The service prints it and exits at start.
package struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    package var variable: String
    package var reason: String

    package init(variable: String, reason: String) {
        self.variable = variable
        self.reason = reason
    }

    package var description: String { "\(variable): \(reason)" }
}

/// Where the HTTP endpoints listen.
package struct HTTPConfiguration: Sendable, Equatable {
    package var host: String
    package var port: Int
}

/// Everything a service reads from its environment, parsed and checked once at start.
/// The variables are listed, with their defaults, in docs/configuration.md.
package struct ServiceConfiguration: Sendable {
    package var service: String
    package var instanceID: String
    package var http: HTTPConfiguration
    package var mqtt: MQTTConfiguration
    /// Set only for services that own a database schema.
    package var database: PostgresClient.Configuration?
    /// How long a background loop waits for one database step before it gives the step up and
    /// tries again (`MODELFLEET_DATABASE_STEP_TIMEOUT`); ``LoopHealth`` reports a loop whose steps
    /// keep failing for longer than that.
    package var databaseStepTimeout: Duration = .seconds(15)
    package var logLevel: Logger.Level
    /// How REST requests are checked (docs/security.md); nil only with `MODELFLEET_API_AUTH=off`.
    package var api: APISecurity?

    package static let defaultMQTTURL = "mqtt://127.0.0.1:1883"
    package static let defaultDatabaseURL = "postgres://modelfleet@127.0.0.1:5432/modelfleet"

    package init(
        service: ServiceDescriptor, environment: [String: String], hostName: String = ProcessInfo.processInfo.hostName
    ) throws(ConfigurationError) {
        let env = EnvironmentReader(environment)
        self.service = service.name
        let defaultInstance = "\(hostName.split(separator: ".").first.map(String.init) ?? "host")-\(getpid())"
        let instance = env["MODELFLEET_INSTANCE_ID"] ?? defaultInstance
        do {
            self.instanceID = try TopicLevel(instance).value
        } catch {
            throw ConfigurationError(variable: "MODELFLEET_INSTANCE_ID", reason: "'\(instance)' \(error.reason)")
        }

        self.http = HTTPConfiguration(
            host: env["MODELFLEET_HTTP_HOST"] ?? "127.0.0.1",
            port: try env.port("MODELFLEET_HTTP_PORT", default: service.defaultHTTPPort)
        )

        let mqttURL = env["MODELFLEET_MQTT_URL"] ?? Self.defaultMQTTURL
        do {
            var mqtt = try MQTTConfiguration(url: mqttURL, clientID: "\(service.name)-\(instanceID)")
            mqtt.responseTopicPrefix = Topic.repliesPrefix.path
            try Self.applyCredentials(to: &mqtt, service: service.name, env)
            let tlsFiles = (
                ca: try env.readableFile("MODELFLEET_MQTT_CA_FILE"),
                certificate: try env.readableFile("MODELFLEET_MQTT_CERT_FILE"),
                key: try env.readableFile("MODELFLEET_MQTT_KEY_FILE")
            )
            if (tlsFiles.certificate == nil) != (tlsFiles.key == nil) {
                throw ConfigurationError(
                    variable: "MODELFLEET_MQTT_CERT_FILE", reason: "a client certificate needs MODELFLEET_MQTT_KEY_FILE too, and the other way round")
            }
            if tlsFiles.ca != nil || tlsFiles.certificate != nil {
                guard mqtt.tls != nil else {
                    throw ConfigurationError(variable: "MODELFLEET_MQTT_URL", reason: "TLS files are set but the URL is not mqtts://")
                }
                mqtt.tls = MQTTConfiguration.TLS(caFile: tlsFiles.ca, certificateFile: tlsFiles.certificate, keyFile: tlsFiles.key)
            }
            self.mqtt = mqtt
        } catch let error as MQTTError {
            throw ConfigurationError(variable: "MODELFLEET_MQTT_URL", reason: "'\(EnvironmentReader.redacted(mqttURL))': \(error)")
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(variable: "MODELFLEET_MQTT_URL", reason: "\(error)")
        }

        if service.schema != nil {
            let databaseURL = env["MODELFLEET_DATABASE_URL"] ?? Self.defaultDatabaseURL
            var database = try Self.parseDatabaseURL(databaseURL)
            // The role's password from a file, out of the URL (and so of the process list).
            if let path = try env.readableFile("MODELFLEET_DATABASE_PASSWORD_FILE") {
                database.password = try readPasswordFile(path, variable: "MODELFLEET_DATABASE_PASSWORD_FILE")
            }
            self.database = database
            let seconds = try env.number("MODELFLEET_DATABASE_STEP_TIMEOUT", default: 15, in: 0.5...600)
            self.databaseStepTimeout = .milliseconds(Int64(seconds * 1000))
        } else {
            self.database = nil
        }

        let level = env["MODELFLEET_LOG_LEVEL"] ?? "info"
        guard let logLevel = Logger.Level(rawValue: level.lowercased()) else {
            throw ConfigurationError(
                variable: "MODELFLEET_LOG_LEVEL",
                reason: "'\(level)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self.logLevel = logLevel
        self.api = try APISecurity(env)
    }

    /// `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`.
    package static func parseDatabaseURL(_ url: String) throws(ConfigurationError) -> PostgresClient.Configuration {
        func fail(_ reason: String) -> ConfigurationError {
            ConfigurationError(variable: "MODELFLEET_DATABASE_URL", reason: "'\(EnvironmentReader.redacted(url))': \(reason)")
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw fail("not a URL; expected postgres://user:password@host:port/database")
        }
        guard scheme == "postgres" || scheme == "postgresql" else { throw fail("scheme must be postgres://") }
        guard let host = components.host, !host.isEmpty else { throw fail("no host") }
        guard let user = components.user?.removingPercentEncoding, !user.isEmpty else { throw fail("no user name") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw fail("no database name in the path") }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw fail("port \(port) is out of range 1-65535") }
        let sslMode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        default: throw fail("sslmode '\(sslMode)' is not one of disable, prefer, require")
        }
        var configuration = PostgresClient.Configuration(
            host: host,
            port: port,
            username: user,
            password: components.password?.removingPercentEncoding,
            database: database,
            tls: tls
        )
        configuration.options.connectTimeout = .seconds(3)
        // The server ends any statement after a minute: a query a loop gave up on (LoopHealth)
        // must not keep its connection from the pool for as long as a lock is held.
        configuration.options.additionalStartupParameters = [("statement_timeout", "60s")]
        return configuration
    }
}

/// Reads and checks environment variables, naming the variable in every error.
package struct EnvironmentReader {
    private let environment: [String: String]

    package init(_ environment: [String: String]) { self.environment = environment }

    /// The value, or nil when unset or empty.
    package subscript(name: String) -> String? {
        guard let value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    func port(_ name: String, default defaultValue: Int) throws(ConfigurationError) -> Int {
        guard let text = self[name] else { return defaultValue }
        guard let port = Int(text), (0...65535).contains(port) else {
            throw ConfigurationError(variable: name, reason: "'\(text)' is not a port number (0-65535)")
        }
        return port
    }

    /// A number in `range`, or `defaultValue` when unset.
    package func number(_ name: String, default defaultValue: Double, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double {
        guard let text = self[name] else { return defaultValue }
        guard let value = Double(text), range.contains(value) else {
            throw ConfigurationError(variable: name, reason: "'\(text)' is not a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    package func readableFile(_ name: String) throws(ConfigurationError) -> String? {
        guard let path = self[name] else { return nil }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ConfigurationError(variable: name, reason: "'\(path)' is not a readable file")
        }
        return path
    }

    /// The URL with any password replaced, for error messages and logs.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }
}

extension ServiceConfiguration {
    /// The broker credentials: `MODELFLEET_MQTT_PASSWORD_FILE` (the file's first line) with
    /// `MODELFLEET_MQTT_USERNAME`, which defaults to `modelfleet:<service>`, the name
    /// `scripts/mqtt_security.py` gives each service (docs/security.md). A user and password in
    /// the URL are used when neither variable is set.
    static func applyCredentials(to mqtt: inout MQTTConfiguration, service: String, _ env: EnvironmentReader) throws(ConfigurationError) {
        let username = env["MODELFLEET_MQTT_USERNAME"]
        guard let path = try env.readableFile("MODELFLEET_MQTT_PASSWORD_FILE") else {
            if username != nil {
                throw ConfigurationError(variable: "MODELFLEET_MQTT_PASSWORD_FILE", reason: "is required with MODELFLEET_MQTT_USERNAME")
            }
            return
        }
        mqtt.username = username ?? "modelfleet:\(service)"
        mqtt.password = try readPasswordFile(path, variable: "MODELFLEET_MQTT_PASSWORD_FILE")
    }
}

/// The first line of the file at `path`, without surrounding spaces: a password or a token kept
/// out of the environment and the process list.
package func readPasswordFile(_ path: String, variable: String) throws(ConfigurationError) -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ConfigurationError(variable: variable, reason: "'\(path)' cannot be read as UTF-8 text")
    }
    let password = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
    let trimmed = password.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else { throw ConfigurationError(variable: variable, reason: "'\(path)' is empty") }
    return trimmed
}

/// REST security settings: the API keys' signing secret, the scrape token of `/metrics` and the
/// per-key rate.
package struct APISecurity: Sendable {
    package var signer: APIKeySigner
    package var scrapeToken: String?
    package var rate: Double
    package var burst: Double

    /// `MODELFLEET_API_SIGNING_KEY_FILE` is required unless `MODELFLEET_API_AUTH=off` (nil: every
    /// endpoint open, which the service says in a warning at start).
    init?(_ env: EnvironmentReader) throws(ConfigurationError) {
        switch env["MODELFLEET_API_AUTH"] ?? "on" {
        case "off": return nil
        case "on": break
        case let other: throw ConfigurationError(variable: "MODELFLEET_API_AUTH", reason: "'\(other)' is not on or off")
        }
        guard let path = try env.readableFile("MODELFLEET_API_SIGNING_KEY_FILE") else {
            throw ConfigurationError(
                variable: "MODELFLEET_API_SIGNING_KEY_FILE",
                reason: "is required: the API keys' signing secret, shared by every service (MODELFLEET_API_AUTH=off leaves the API open)")
        }
        signer = try APIKeySigner.load(path: path, variable: "MODELFLEET_API_SIGNING_KEY_FILE")
        scrapeToken = try env.readableFile("MODELFLEET_METRICS_TOKEN_FILE").map { path throws(ConfigurationError) in
            try readPasswordFile(path, variable: "MODELFLEET_METRICS_TOKEN_FILE")
        }
        rate = try env.number("MODELFLEET_API_RATE", default: 200, in: 0.001...1_000_000)
        burst = try env.number("MODELFLEET_API_BURST", default: 400, in: 1...1_000_000)
    }
}
