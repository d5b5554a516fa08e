import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

#if canImport(Glibc)
import Glibc
private let streamSocketType = Int32(SOCK_STREAM.rawValue)
#else
import Darwin
private let streamSocketType = SOCK_STREAM
#endif

// MARK: - A tiny blocking HTTP/1.1 client

/// A service's base URL, resolved once. Each request opens a connection and reads the answer to
/// its end (`Connection: close`): a few requests a second need nothing more.
struct HTTPService: Sendable {
    let family: Int32
    let address: [UInt8]
    let host: String

    init(url text: String) throws {
        guard let url = URLComponents(string: text), url.scheme == "http", let name = url.host, !name.isEmpty else {
            throw ValidationError("'\(text)' is not an http://host[:port] URL")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = streamSocketType
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, String(url.port ?? 80), &hints, &found)
        guard status == 0, let first = found, let address = first.pointee.ai_addr else {
            throw BenchError("cannot resolve \(name): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        family = first.pointee.ai_family
        self.address = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
        host = url.port.map { "\(name):\($0)" } ?? name
    }

    /// Throws unless `GET /ready` answers 200.
    func checkReady(_ name: String) throws {
        let status = try get("/ready").status
        guard status == 200 else { throw BenchError("the \(name) is not ready (GET /ready answered \(status))") }
    }

    func getJSON<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        let (status, body) = try get(path)
        guard status == 200 else { throw BenchError("GET \(path) answered \(status): \(String(decoding: body.prefix(300), as: UTF8.self))") }
        return try JSONDecoder().decode(T.self, from: body)
    }

    func get(_ path: String) throws -> (status: Int, body: Data) {
        try send("GET", path)
    }

    /// POSTs `body` (JSON) and decodes the answer, which must have status `expected`.
    func postJSON<T: Decodable>(
        _ type: T.Type, _ path: String, body: some Encodable, expected: Int, timeoutSeconds: Int = 10
    ) throws -> T {
        let (status, answer) = try send("POST", path, body: try JSONEncoder().encode(body), timeoutSeconds: timeoutSeconds)
        guard status == expected else {
            throw BenchError("POST \(path) answered \(status): \(String(decoding: answer.prefix(300), as: UTF8.self))")
        }
        return try JSONDecoder().decode(T.self, from: answer)
    }

    /// One request; `body`, when given, is sent as JSON. A server that takes longer than
    /// `timeoutSeconds` to send anything fails the request instead of hanging the run.
    func send(_ method: String, _ path: String, body: Data? = nil, timeoutSeconds: Int = 10) throws -> (status: Int, body: Data) {
        let fd = socket(family, streamSocketType, 0)
        guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = address.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard connected == 0 else { throw BenchError("connect to \(host): \(String(cString: strerror(errno)))") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nAccept: application/json\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        let request = Array((head + "\r\n").utf8) + (body.map(Array.init) ?? [])
        var offset = 0
        while offset < request.count {
            let written = request[offset...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw BenchError("\(method) \(path): write: \(String(cString: strerror(errno)))") }
            offset += written
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw BenchError("\(method) \(path): read: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            response += chunk[0..<count]
        }
        let separator = Array("\r\n\r\n".utf8)
        guard let headEnd = (0..<max(response.count - 3, 0)).first(where: { response[$0..<$0 + 4].elementsEqual(separator) }) else {
            throw BenchError("\(method) \(path): no complete HTTP answer")
        }
        let answerHead = String(decoding: response[..<headEnd], as: UTF8.self).lowercased()
        let statusLine = answerHead.prefix { $0 != "\r" }.split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("http/1."), let status = Int(statusLine[1]) else {
            throw BenchError("\(method) \(path): not an HTTP/1.x status line")
        }
        guard !answerHead.contains("transfer-encoding: chunked") else { throw BenchError("\(method) \(path): chunked answers are not supported") }
        return (status, Data(response[(headEnd + 4)...]))
    }
}
