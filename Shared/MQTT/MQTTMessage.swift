package import Foundation

/// MQTT delivery guarantee for a publish or a subscription.
package enum MQTTQoS: Int32, Sendable, Comparable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2

    package static func < (lhs: MQTTQoS, rhs: MQTTQoS) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One MQTT 5 user property: a name and a value, both UTF-8; names may repeat.
package struct MQTTUserProperty: Sendable, Hashable {
    package var name: String
    package var value: String

    package init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The MQTT 5 publish properties ModelFleet uses.
package struct MQTTProperties: Sendable, Hashable {
    package var contentType: String?
    /// Seconds after which the broker discards the message if it has not been delivered.
    package var messageExpiryInterval: UInt32?
    package var responseTopic: String?
    package var correlationData: Data?
    package var userProperties: [MQTTUserProperty]

    package init(
        contentType: String? = nil,
        messageExpiryInterval: UInt32? = nil,
        responseTopic: String? = nil,
        correlationData: Data? = nil,
        userProperties: [MQTTUserProperty] = []
    ) {
        self.contentType = contentType
        self.messageExpiryInterval = messageExpiryInterval
        self.responseTopic = responseTopic
        self.correlationData = correlationData
        self.userProperties = userProperties
    }

    /// The first user property with this name.
    package func userProperty(_ name: String) -> String? {
        userProperties.first { $0.name == name }?.value
    }

    var isEmpty: Bool {
        contentType == nil && messageExpiryInterval == nil && responseTopic == nil && correlationData == nil
            && userProperties.isEmpty
    }
}

/// A message received from the broker. Everything is copied out of libmosquitto's memory.
package struct MQTTMessage: Sendable {
    package var topic: String
    package var payload: Data
    package var qos: MQTTQoS
    /// True when the broker delivered this as a retained message (a new subscriber catching up).
    package var retain: Bool
    package var properties: MQTTProperties

    package init(
        topic: String,
        payload: Data,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = MQTTProperties()
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }

    /// The payload as UTF-8 text, or nil when it is not valid UTF-8.
    package var payloadString: String? { String(data: payload, encoding: .utf8) }
}

/// The answer a request handler gives; see ``MQTTClient/serveRequests(on:qos:maxConcurrentRequests:handler:)``.
package struct MQTTReply: Sendable {
    package var payload: Data
    package var contentType: String?
    package var userProperties: [MQTTUserProperty]

    package init(payload: Data, contentType: String? = nil, userProperties: [MQTTUserProperty] = []) {
        self.payload = payload
        self.contentType = contentType
        self.userProperties = userProperties
    }
}

/// A message to publish later on the client's behalf: a last will, a birth or a farewell message.
package struct MQTTOutgoingMessage: Sendable {
    package var topic: String
    package var payload: Data
    package var qos: MQTTQoS
    package var retain: Bool
    package var properties: MQTTProperties

    package init(topic: String, payload: Data, qos: MQTTQoS = .atLeastOnce, retain: Bool = false, properties: MQTTProperties = .init()) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}
