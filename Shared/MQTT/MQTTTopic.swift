/// Checks on topic names and filters, made before anything reaches libmosquitto so that a bad
/// topic is a clear Swift error rather than a library code.
package enum MQTTTopic {
    /// A topic name one can publish to: not empty, at most 65535 UTF-8 bytes, no wildcards, no NUL.
    package static func validateName(_ topic: String) throws(MQTTError) {
        try validateCommon(topic, what: "topic")
        // Over the UTF-8 bytes: `String.contains(String)` goes through Foundation's locale-aware
        // search, a measurable share of a publish.
        if topic.utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") }) {
            throw .invalidArgument("topic '\(topic)' contains a wildcard; wildcards are for subscriptions")
        }
    }

    /// A subscription filter: `+` fills a whole level, `#` only as the whole last level, and
    /// `$share/<group>/<filter>` names a shared subscription.
    package static func validateFilter(_ filter: String) throws(MQTTError) {
        try validateCommon(filter, what: "filter")
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        if filter.hasPrefix("$share/") {
            guard levels.count >= 3, !levels[1].isEmpty, !levels[1].contains("+"), !levels[1].contains("#") else {
                throw .invalidArgument("shared subscription '\(filter)' must be $share/<group>/<filter>")
            }
            return try validateFilter(levels.dropFirst(2).joined(separator: "/"))
        }
        for (index, level) in levels.enumerated() {
            if level.contains("#") && (level != "#" || index != levels.count - 1) {
                throw .invalidArgument("filter '\(filter)': '#' must be a whole level and the last one")
            }
            if level.contains("+") && level != "+" {
                throw .invalidArgument("filter '\(filter)': '+' must be a whole level")
            }
        }
    }

    /// The filter as the broker matches it against topics: a shared subscription's `$share/<group>/`
    /// prefix is not part of the match.
    package static func matchFilter(of filter: String) -> String {
        guard filter.hasPrefix("$share/") else { return filter }
        return filter.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false).dropFirst(2).joined()
    }

    private static func validateCommon(_ value: String, what: String) throws(MQTTError) {
        if value.isEmpty { throw .invalidArgument("\(what) is empty") }
        if value.utf8.count > 65_535 { throw .invalidArgument("\(what) is longer than 65535 bytes") }
        if value.utf8.contains(0) { throw .invalidArgument("\(what) contains a NUL character") }
    }
}
