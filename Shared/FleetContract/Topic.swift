/// A topic of ModelFleet's MQTT contract. Every topic string in the project is built here, so a
/// topic is spelled in one place only; see `docs/mqtt-contract.md`.
///
/// Topics are versioned under `modelfleet/v1/`. An id used as a topic level (an agent id, a
/// service instance) must be a valid ``TopicLevel``.
package struct Topic: Hashable, Sendable, CustomStringConvertible {
    package let path: String

    private init(_ path: String) { self.path = path }

    package var description: String { path }

    /// `modelfleet/v1`, the root of every topic of this contract version.
    package static let root = Topic("modelfleet/v1")

    /// The prefix under which each client receives responses to its MQTT 5 requests:
    /// `modelfleet/v1/replies/<client id>`.
    package static let repliesPrefix = root.appending("replies")

    /// Retained presence of one running service instance: `modelfleet/v1/services/<service>/<instance>/status`.
    package static func serviceStatus(service: TopicLevel, instance: TopicLevel) -> Topic {
        services(service).appending(instance.value).appending("status")
    }

    /// `modelfleet/v1/services/<service>`, under which each instance has its topics.
    static func services(_ service: TopicLevel) -> Topic { root.appending("services").appending(service.value) }

    func appending(_ level: String) -> Topic { Topic("\(path)/\(level)") }
}

/// One level of a topic that comes from data (an id): 1–128 characters of letters, digits, `-`, `_`
/// and `.`, so that it can never add a level or a wildcard.
package struct TopicLevel: Hashable, Sendable, CustomStringConvertible {
    package let value: String

    package init(_ value: String) throws(ContractError) {
        guard !value.isEmpty, value.utf8.count <= 128 else {
            throw ContractError(field: "id", reason: "must be 1 to 128 characters long")
        }
        // ASCII letters, digits, '-', '_' and '.', checked byte by byte: every agent message's
        // topic passes here.
        let allowed = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                true
            default: false
            }
        }
        guard allowed, value != ".", value != ".." else {
            throw ContractError(field: "id", reason: "'\(value)' may hold only letters, digits, '-', '_' and '.'")
        }
        self.value = value
    }

    package var description: String { value }
}

extension Topic {
    /// Every instance topic of `service` (`modelfleet/v1/services/<service>/+/+`): their statuses,
    /// and each instance's ``serviceSync(service:instance:)`` marks.
    package static func serviceInstanceTopics(of service: TopicLevel) -> Topic {
        services(service).appending("+").appending("+")
    }

    /// A mark an instance publishes (QoS 1, not retained) on a subscription it shares with the
    /// retained statuses: the broker sends a new subscription's retained messages before what is
    /// published after it, so the mark coming back says every retained status has arrived.
    package static func serviceSync(service: TopicLevel, instance: TopicLevel) -> Topic {
        services(service).appending(instance.value).appending("sync")
    }
}
