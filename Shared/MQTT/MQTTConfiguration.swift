import Foundation

/// Everything needed to connect one MQTT client. Build it from a URL with
/// ``init(url:clientID:)`` and adjust the rest.
package struct MQTTConfiguration: Sendable {
    package struct TLS: Sendable, Equatable {
        /// PEM file of the certificate authorities to trust; nil trusts the system store.
        package var caFile: String?
        /// Client certificate and key (PEM) for mutual TLS.
        package var certificateFile: String?
        package var keyFile: String?

        package init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    /// Capped exponential backoff with jitter between connection attempts.
    package struct Backoff: Sendable, Equatable {
        package var initial: Duration
        package var maximum: Duration

        package init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(10)) {
            self.initial = initial
            self.maximum = maximum
        }

        /// The delay before attempt `attempt` (0-based): `min(maximum, initial * 2^attempt)`, then a
        /// random point in its upper half so that many clients cut off together do not return together.
        package func delay(attempt: Int, random: Double) -> Duration {
            let exponent = min(attempt, 30)
            let ceiling = min(maximum, initial * (1 << exponent))
            return ceiling * (0.5 + 0.5 * min(max(random, 0), 1))
        }
    }

    package var host: String
    package var port: Int
    package var username: String?
    package var password: String?
    package var tls: TLS?
    package var clientID: String
    package var keepAlive: Duration
    /// MQTT 5 clean start. Off, with a ``sessionExpiry``, keeps subscriptions and queued QoS 1/2
    /// messages on the broker while the client is away.
    package var cleanStart: Bool
    /// How long the broker keeps the session after a disconnect; nil ends it at disconnect.
    package var sessionExpiry: Duration?
    /// Published by the broker for this client when it vanishes without a clean disconnect.
    package var lastWill: MQTTOutgoingMessage?
    /// Published by the client after every successful connect, in order (fire and forget), e.g. a
    /// retained "online" presence then a hello; made anew each time so that they are current.
    package var birth: (@Sendable () -> [MQTTOutgoingMessage])?
    /// Published by the client just before a clean disconnect, e.g. a retained "offline, stopped".
    package var farewell: (@Sendable () -> MQTTOutgoingMessage)?
    package var backoff: Backoff
    /// Messages one subscription holds for a consumer that has not read them yet; past that,
    /// new messages are dropped and counted.
    package var subscriptionBufferCapacity: Int
    /// Where responses to this client's requests arrive; a per-client topic under this prefix.
    package var responseTopicPrefix: String

    /// The topic on which this client receives responses to its requests.
    package var responseTopic: String { "\(responseTopicPrefix)/\(clientID)" }

    package init(
        host: String = "127.0.0.1",
        port: Int = 1883,
        clientID: String,
        username: String? = nil,
        password: String? = nil,
        tls: TLS? = nil
    ) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.username = username
        self.password = password
        self.tls = tls
        self.keepAlive = .seconds(10)
        self.cleanStart = true
        self.sessionExpiry = nil
        self.lastWill = nil
        self.birth = nil
        self.farewell = nil
        self.backoff = Backoff()
        self.subscriptionBufferCapacity = 10_000
        self.responseTopicPrefix = "replies"
    }

    /// Parses `mqtt://[user[:password]@]host[:port]` or `mqtts://…` (TLS, default port 8883).
    package init(url: String, clientID: String) throws(MQTTError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw .invalidConfiguration("'\(url)' is not a URL; expected mqtt://[user:password@]host[:port]")
        }
        let useTLS: Bool
        switch scheme {
        case "mqtt", "tcp": useTLS = false
        case "mqtts", "ssl": useTLS = true
        default: throw .invalidConfiguration("scheme '\(scheme)' is not supported; use mqtt:// or mqtts://")
        }
        guard let host = components.host, !host.isEmpty else {
            throw .invalidConfiguration("'\(url)' has no host")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw .invalidConfiguration("port \(port) is out of range 1-65535")
        }
        if !components.path.isEmpty && components.path != "/" {
            throw .invalidConfiguration("'\(url)' has a path; an MQTT URL has none")
        }
        self.init(
            host: host,
            port: components.port ?? (useTLS ? 8883 : 1883),
            clientID: clientID,
            username: components.user?.removingPercentEncoding,
            password: components.password?.removingPercentEncoding,
            tls: useTLS ? TLS() : nil
        )
    }
}
