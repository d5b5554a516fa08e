import Foundation
import Testing

@testable import ServiceRuntime

@Suite("Service configuration from the environment")
struct ServiceConfigurationTests {
    let withDatabase = ServiceDescriptor(name: "registry", defaultHTTPPort: 8081, schema: DatabaseSchema(name: "registry", migrations: []))
    let withoutDatabase = ServiceDescriptor(name: "autoscaler", defaultHTTPPort: 8083)
    /// API keys off: these tests are about the other variables.
    let keysOff = ["MODELFLEET_API_AUTH": "off"]

    @Test("defaults apply when nothing is set")
    func defaults() throws {
        let configuration = try ServiceConfiguration(service: withDatabase, environment: keysOff, hostName: "box.example")
        #expect(configuration.http == HTTPConfiguration(host: "127.0.0.1", port: 8081))
        #expect(configuration.mqtt.host == "127.0.0.1" && configuration.mqtt.port == 1883)
        #expect(configuration.mqtt.clientID == "registry-\(configuration.instanceID)")
        #expect(configuration.instanceID.hasPrefix("box-"))
        #expect(configuration.mqtt.responseTopic == "modelfleet/v1/replies/\(configuration.mqtt.clientID)")
        #expect(configuration.database?.host == "127.0.0.1" && configuration.database?.database == "modelfleet")
        #expect(configuration.logLevel == .info)
    }

    @Test("every variable is read")
    func everything() throws {
        let configuration = try ServiceConfiguration(
            service: withDatabase,
            environment: [
                "MODELFLEET_MQTT_URL": "mqtt://svc:secret@broker:1999",
                "MODELFLEET_DATABASE_URL": "postgresql://app:pw@db.internal:6543/fleet?sslmode=disable",
                "MODELFLEET_HTTP_HOST": "0.0.0.0",
                "MODELFLEET_HTTP_PORT": "9000",
                "MODELFLEET_LOG_LEVEL": "DEBUG",
                "MODELFLEET_INSTANCE_ID": "registry-0",
                "MODELFLEET_API_AUTH": "off",
            ]
        )
        #expect(configuration.mqtt.username == "svc" && configuration.mqtt.password == "secret" && configuration.mqtt.port == 1999)
        #expect(configuration.database?.port == 6543 && configuration.database?.username == "app" && configuration.database?.password == "pw")
        #expect(configuration.database?.database == "fleet")
        #expect(configuration.http == HTTPConfiguration(host: "0.0.0.0", port: 9000))
        #expect(configuration.logLevel == .debug)
        #expect(configuration.instanceID == "registry-0")
    }

    @Test("a service without a schema reads no database URL")
    func noDatabase() throws {
        let configuration = try ServiceConfiguration(
            service: withoutDatabase, environment: ["MODELFLEET_DATABASE_URL": "garbage", "MODELFLEET_API_AUTH": "off"])
        #expect(configuration.database == nil)
        #expect(configuration.http.port == 8083)
    }

    @Test(
        "a bad value names its variable",
        arguments: [
            ("MODELFLEET_HTTP_PORT", "eighty"),
            ("MODELFLEET_HTTP_PORT", "70000"),
            ("MODELFLEET_MQTT_URL", "http://broker"),
            ("MODELFLEET_MQTT_URL", "mqtt://"),
            ("MODELFLEET_DATABASE_URL", "postgres://db/fleet"),
            ("MODELFLEET_DATABASE_URL", "postgres://u@db"),
            ("MODELFLEET_DATABASE_URL", "postgres://u@db/fleet?sslmode=verify-full"),
            ("MODELFLEET_DATABASE_URL", "mysql://u@db/fleet"),
            ("MODELFLEET_LOG_LEVEL", "loud"),
            ("MODELFLEET_INSTANCE_ID", "a/b"),
            ("MODELFLEET_MQTT_CA_FILE", "/nonexistent/ca.pem"),
        ])
    func badValues(variable: String, value: String) {
        #expect {
            _ = try ServiceConfiguration(service: withDatabase, environment: [variable: value])
        } throws: { error in
            (error as? ConfigurationError)?.variable == variable
        }
    }

    @Test("TLS files need an mqtts:// URL")
    func tlsNeedsMQTTS() {
        #expect {
            _ = try ServiceConfiguration(service: withoutDatabase, environment: ["MODELFLEET_MQTT_CA_FILE": "/etc/hostname"])
        } throws: { error in
            (error as? ConfigurationError)?.variable == "MODELFLEET_MQTT_URL"
        }
    }

    @Test("passwords are not repeated in error messages")
    func redaction() {
        #expect {
            _ = try ServiceConfiguration(service: withDatabase, environment: ["MODELFLEET_DATABASE_URL": "postgres://u:hunter2@db"])
        } throws: { error in
            let text = "\(error)"
            return !text.contains("hunter2") && text.contains("***")
        }
    }

    @Test("API keys: the signing secret is required unless switched off, and must be long enough")
    func apiSecurity() throws {
        #expect {
            _ = try ServiceConfiguration(service: withoutDatabase, environment: [:])
        } throws: { error in
            (error as? ConfigurationError)?.variable == "MODELFLEET_API_SIGNING_KEY_FILE"
        }
        #expect {
            _ = try ServiceConfiguration(service: withoutDatabase, environment: ["MODELFLEET_API_AUTH": "maybe"])
        } throws: { error in
            (error as? ConfigurationError)?.variable == "MODELFLEET_API_AUTH"
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let short = folder.appendingPathComponent("short")
        try Data("too short\n".utf8).write(to: short)
        #expect {
            _ = try ServiceConfiguration(service: withoutDatabase, environment: ["MODELFLEET_API_SIGNING_KEY_FILE": short.path])
        } throws: { error in
            (error as? ConfigurationError)?.variable == "MODELFLEET_API_SIGNING_KEY_FILE" && "\(error)".contains("at least 32")
        }
        let secret = folder.appendingPathComponent("secret")
        try Data((String(repeating: "k", count: 40) + "\n").utf8).write(to: secret)
        let configuration = try ServiceConfiguration(
            service: withoutDatabase, environment: ["MODELFLEET_API_SIGNING_KEY_FILE": secret.path, "MODELFLEET_API_RATE": "5"])
        #expect(configuration.api?.rate == 5 && configuration.api?.burst == 400 && configuration.api?.scrapeToken == nil)
        #expect(try ServiceConfiguration(service: withoutDatabase, environment: keysOff).api == nil)
    }

    @Test("broker credentials: a password file with the service's username by default; a username needs the file")
    func mqttCredentials() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("mqtt-\(UUID().uuidString)")
        try Data("s3cret\nignored\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let configuration = try ServiceConfiguration(
            service: withoutDatabase, environment: keysOff.merging(["MODELFLEET_MQTT_PASSWORD_FILE": file.path]) { $1 })
        #expect(configuration.mqtt.username == "modelfleet:autoscaler" && configuration.mqtt.password == "s3cret")
        let named = try ServiceConfiguration(
            service: withoutDatabase,
            environment: keysOff.merging(["MODELFLEET_MQTT_PASSWORD_FILE": file.path, "MODELFLEET_MQTT_USERNAME": "other"]) { $1 })
        #expect(named.mqtt.username == "other")
        #expect {
            _ = try ServiceConfiguration(service: withoutDatabase, environment: keysOff.merging(["MODELFLEET_MQTT_USERNAME": "other"]) { $1 })
        } throws: { error in
            (error as? ConfigurationError)?.variable == "MODELFLEET_MQTT_PASSWORD_FILE"
        }
    }
}
