package import Foundation

// Ids are written in lower case everywhere, as RFC 9562 (section 4) asks; Foundation writes a
// UUID in upper case. These overloads win over the generic `encode` in every `Encodable`
// conformance of a module that imports FleetContract, synthesised ones included, so no type
// spells the rule again. Readers accept either case.
//
// An incremental build does not see that a synthesised conformance now calls them: after
// changing this file, build the modules that encode ids from clean.

extension UUID {
    /// The id as the services write it: lower case.
    package var lowercasedString: String { uuidString.lowercased() }
}

extension KeyedEncodingContainer {
    package mutating func encode(_ value: UUID, forKey key: Key) throws {
        try encode(value.lowercasedString, forKey: key)
    }

    package mutating func encodeIfPresent(_ value: UUID?, forKey key: Key) throws {
        try encodeIfPresent(value?.lowercasedString, forKey: key)
    }

    package mutating func encode(_ value: [UUID], forKey key: Key) throws {
        try encode(value.map(\.lowercasedString), forKey: key)
    }

    package mutating func encodeIfPresent(_ value: [UUID]?, forKey key: Key) throws {
        try encodeIfPresent(value?.map(\.lowercasedString), forKey: key)
    }
}

extension SingleValueEncodingContainer {
    package mutating func encode(_ value: UUID) throws {
        try encode(value.lowercasedString)
    }
}
