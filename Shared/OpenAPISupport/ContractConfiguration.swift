import FleetContract
package import Foundation
package import OpenAPIRuntime

extension Configuration {
    /// How generated servers and clients (swift-openapi-generator) write and read the contracts'
    /// JSON: dates as every other answer has them, `2026-11-23T10:00:00.000Z`
    /// (``ContractCoding``); keys unsorted and unindented, slashes unescaped, as it writes them.
    package static let contract = Configuration(dateTranscoder: ContractDateTranscoder(), jsonEncodingOptions: [.withoutEscapingSlashes])
}

/// ``ContractCoding``'s date rule for the generated code: ISO 8601 with milliseconds in UTC
/// written; ISO 8601 with or without fractional seconds read.
package struct ContractDateTranscoder: DateTranscoder {
    package init() {}

    package func encode(_ date: Date) throws -> String { ContractCoding.timestamp(date) }

    package func decode(_ text: String) throws -> Date {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not an ISO 8601 timestamp"))
    }
}
