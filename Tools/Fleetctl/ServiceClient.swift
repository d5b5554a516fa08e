import AsyncHTTPClient
import FleetContract
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// One of the control plane's HTTP services as the tool talks to it: JSON in, JSON out, and every
/// failure turned into a ``FleetctlError`` that names the service.
struct ServiceClient: Sendable {
    /// "registry" or "orchestrator", for messages.
    let name: String
    let baseURL: String
    let http: HTTPClient
    /// Sent as `Authorization: Bearer`; nil sends none (the service answers 401).
    var apiKey: String? = nil

    /// Answers larger than this are refused; an operation on 100,000 devices is about 30 MB.
    static let maximumResponseSize = 256 * 1024 * 1024

    /// A successful answer: its status and body.
    struct Answer: Sendable {
        var status: Int
        var body: Data

        /// Decodes the body, or says which request answered what the tool cannot read.
        func decode<Value: Decodable>(_ type: Value.Type, from service: String) throws -> Value {
            do {
                return try ContractCoding.decoder.decode(type, from: body)
            } catch {
                throw FleetctlError.unexpectedResponse(service: service, detail: "cannot read its JSON: \(error)")
            }
        }
    }

    /// Sends one request; any status but 2xx throws the service's error.
    func send(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: baseURL + path + Self.queryString(query))
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "fleetctl")
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try ContractCoding.encoder.encode(body)))
        }
        let data: Data
        let status: Int
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            status = Int(response.status.code)
            data = Data(buffer: try await response.body.collect(upTo: Self.maximumResponseSize))
        } catch {
            throw FleetctlError.unreachable(service: name, url: baseURL, reason: Self.reason(error))
        }
        guard (200..<300).contains(status) else { throw serviceError(status: status, body: data) }
        return Answer(status: status, body: data)
    }

    /// GETs `path` and decodes the answer.
    func get<Value: Decodable>(_ path: String, query: [(String, String)] = [], as type: Value.Type) async throws -> Value {
        try await send(.GET, path, query: query).decode(type, from: name)
    }

    /// GETs every page of a list (`{"items": [...], "next_cursor": "..."}`), following the cursors.
    func all<Item: Decodable & Sendable>(_ path: String, query: [(String, String)] = [], as type: Item.Type) async throws -> [Item] {
        try await allPages(path) { cursor in
            let page = try await get(path, query: query + (cursor.map { [("cursor", $0)] } ?? []), as: Page<Item>.self)
            return (page.items, page.nextCursor)
        }
    }

    /// A path segment with everything but unreserved characters percent-encoded.
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    private static let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")

    private static func queryString(_ query: [(String, String)]) -> String {
        guard !query.isEmpty else { return "" }
        return "?" + query.map { "\(segment($0.0))=\(segment($0.1))" }.joined(separator: "&")
    }

    /// The error a service answered: its JSON error body when it has one, else the status.
    func serviceError(status: Int, body: Data) -> FleetctlError {
        struct ErrorBody: Decodable {
            struct Detail: Decodable {
                var code: String?
                var message: String
                var field: String?
            }
            var error: Detail
        }
        if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: body) {
            return .api(
                service: name, status: status, code: decoded.error.code ?? "error", message: decoded.error.message, field: decoded.error.field)
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .api(
            service: name, status: status, code: "http_\(status)", message: "the \(name) answered HTTP \(status)\(text.isEmpty ? "" : ": \(text)")",
            field: nil)
    }

    /// A short reason for a failed connection: "connection refused" rather than NIO's nested
    /// description when that is what happened.
    static func reason(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("connection refused") || text.contains("Connection refused") || text.contains("ECONNREFUSED") {
            return "connection refused"
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connection timed out"
            case .deadlineExceeded, .readTimeout: return "no answer in time"
            default: break
            }
        }
        return text
    }
}
