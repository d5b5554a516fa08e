/// A string enumeration of the contract whose decoding error lists the allowed values
/// (`must be one of onnx, tensorrt, …`) instead of Swift's generic message.
package protocol ClosedSet: RawRepresentable, CaseIterable, Codable, Sendable where RawValue == String {}

extension ClosedSet {
    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let value = Self(rawValue: raw) else {
            let allowed = Self.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(raw)' is not one of \(allowed)")
        }
        self = value
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
