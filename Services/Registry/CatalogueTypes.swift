import FleetContract
import Foundation
import ServiceRuntime

/// What a model is for; the catalogue filters by it.
enum ModelTask: String, ClosedSet {
    case objectDetection = "object_detection"
    case classification
    case segmentation
    case poseEstimation = "pose_estimation"
    case ocr
    case embedding
    case other
}

/// The serialised form of a model's weights.
enum ModelFormat: String, ClosedSet {
    case onnx, tensorrt, openvino, tflite, torchscript, other
}

enum VersionStatus: String, ClosedSet {
    case active, deprecated
}

struct Model: Codable, Sendable {
    var id: UUID
    var name: String
    var description: String
    var task: ModelTask
    var format: ModelFormat
    var labels: [String]
    var createdAt: Date
    var updatedAt: Date
    /// Filled on a single model's page, not in lists.
    var versions: [ModelVersion]?

    enum CodingKeys: String, CodingKey {
        case id, name, description, task, format, labels, versions
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

struct ModelVersion: Codable, Sendable {
    var modelID: UUID
    var version: String
    var artifactURI: String
    var sha256: String
    var sizeBytes: Int64
    var inputs: JSONValue
    var outputs: JSONValue
    var defaultSettings: [String: JSONValue]
    var status: VersionStatus
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case version, sha256, inputs, outputs, status
        case modelID = "model_id"
        case artifactURI = "artifact_uri"
        case sizeBytes = "size_bytes"
        case defaultSettings = "default_settings"
        case createdAt = "created_at"
    }
}

// MARK: - Requests

struct NewModel: Decodable, Sendable {
    var name: String
    var description: String?
    var task: ModelTask
    var format: ModelFormat
    var labels: [String]?

    func validated() throws(APIError) -> NewModel {
        var copy = self
        copy.name = try Validate.name(name, field: "name")
        copy.description = try Validate.text(description ?? "", field: "description", maximum: 2_000)
        copy.labels = try Validate.labels(labels ?? [], field: "labels")
        return copy
    }
}

struct ModelUpdate: Decodable, Sendable {
    var description: String?
    var labels: [String]?

    func validated() throws(APIError) -> ModelUpdate {
        guard description != nil || labels != nil else {
            throw APIError.invalid(field: "(body)", "nothing to change: give description and/or labels")
        }
        return ModelUpdate(
            description: try description.map { text throws(APIError) in try Validate.text(text, field: "description", maximum: 2_000) },
            labels: try labels.map { list throws(APIError) in try Validate.labels(list, field: "labels") }
        )
    }
}

struct NewModelVersion: Decodable, Sendable {
    var version: String
    var artifactURI: String
    var sha256: String
    var sizeBytes: Int64
    var inputs: JSONValue?
    var outputs: JSONValue?
    var defaultSettings: [String: JSONValue]?

    enum CodingKeys: String, CodingKey {
        case version, sha256, inputs, outputs
        case artifactURI = "artifact_uri"
        case sizeBytes = "size_bytes"
        case defaultSettings = "default_settings"
    }

    func validated() throws(APIError) -> NewModelVersion {
        var copy = self
        copy.version = try Validate.semanticVersion(version, field: "version")
        copy.artifactURI = try Validate.artifactURI(artifactURI, field: "artifact_uri")
        let digest = sha256.lowercased()
        guard digest.count == 64, digest.allSatisfy(\.isHexDigit) else {
            throw APIError.invalid(field: "sha256", "must be 64 hexadecimal characters")
        }
        copy.sha256 = digest
        guard sizeBytes > 0 else { throw APIError.invalid(field: "size_bytes", "must be a positive number of bytes") }
        copy.defaultSettings = try Validate.settings(defaultSettings ?? [:], field: "default_settings")
        return copy
    }
}

/// Field checks shared by the registry's requests; each failure names its field.
enum Validate {
    static func name(_ value: String, field: String) throws(APIError) -> String {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard (1...128).contains(trimmed.count) else { throw APIError.invalid(field: field, "must be 1 to 128 characters") }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIError.invalid(field: field, "must not contain control characters")
        }
        return trimmed
    }

    static func text(_ value: String, field: String, maximum: Int) throws(APIError) -> String {
        guard value.count <= maximum else { throw APIError.invalid(field: field, "must be at most \(maximum) characters") }
        return value
    }

    static func labels(_ values: [String], field: String) throws(APIError) -> [String] {
        guard values.count <= 32 else { throw APIError.invalid(field: field, "at most 32 labels") }
        var seen = Set<String>()
        for (index, label) in values.enumerated() {
            seen.insert(try self.label(label, field: "\(field)[\(index)]"))
        }
        return seen.sorted()
    }

    /// One label; a query parameter's failure names the parameter (`label`), not a position.
    static func label(_ value: String, field: String) throws(APIError) -> String {
        guard (1...64).contains(value.count), value.allSatisfy({ $0.isLetter || $0.isNumber || "-_.:/".contains($0) }) else {
            throw APIError.invalid(field: field, "a label is 1 to 64 letters, digits, '-', '_', '.', ':' or '/'")
        }
        return value
    }

    static func semanticVersion(_ value: String, field: String) throws(APIError) -> String {
        let pattern = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/
        guard value.count <= 64, value.wholeMatch(of: pattern) != nil else {
            throw APIError.invalid(field: field, "'\(value)' is not a semantic version (MAJOR.MINOR.PATCH)")
        }
        return value
    }

    static func artifactURI(_ value: String, field: String) throws(APIError) -> String {
        guard value.count <= 2_048, let components = URLComponents(string: value), let scheme = components.scheme?.lowercased(),
            ["file", "http", "https", "s3", "oci"].contains(scheme), !(components.path.isEmpty && components.host == nil)
        else {
            throw APIError.invalid(field: field, "must be a file, http(s), s3 or oci URI")
        }
        return value
    }

    /// Known settings are checked for type and range (the contract's rules); others are kept as given.
    static func settings(_ settings: [String: JSONValue], field: String) throws(APIError) -> [String: JSONValue] {
        do {
            try ModelSettings.validate(settings, field: field)
        } catch {
            throw APIError.invalid(field: error.field, error.reason)
        }
        return settings
    }

    static func limit(_ text: String?) throws(APIError) -> Int {
        guard let text else { return 100 }
        guard let value = Int(text) else { throw APIError.invalid(field: "limit", "must be 1 to 1000") }
        return try limit(value)
    }

    /// A page size, 100 when not given.
    static func limit(_ value: Int?) throws(APIError) -> Int {
        guard let value else { return 100 }
        guard (1...1_000).contains(value) else { throw APIError.invalid(field: "limit", "must be 1 to 1000") }
        return value
    }

    static func bool(_ text: String?, field: String) throws(APIError) -> Bool? {
        switch text {
        case nil: return nil
        case "true": return true
        case "false": return false
        default: throw APIError.invalid(field: field, "must be true or false")
        }
    }

    static func uuid(_ text: String, field: String) throws(APIError) -> UUID {
        guard let value = UUID(uuidString: text) else { throw APIError.invalid(field: field, "'\(text)' is not a UUID") }
        return value
    }

    static func identifier(_ text: String, field: String) throws(APIError) -> String {
        do {
            return try TopicLevel(text).value
        } catch {
            throw APIError.invalid(field: field, error.reason)
        }
    }
}

/// An opaque page cursor: the last row's position, base64 so that clients do not build it.
enum Cursor {
    static func encode(_ position: Int64) -> String { Data("\(position)".utf8).base64EncodedString() }

    static func decode(_ text: String?) throws(APIError) -> Int64 {
        guard let text else { return 0 }
        guard let data = Data(base64Encoded: text), let position = Int64(String(decoding: data, as: UTF8.self)), position >= 0 else {
            throw APIError.invalid(field: "cursor", "is not a cursor from a previous page")
        }
        return position
    }

}
