// registry-bench: the client side of scripts/bench-registry.
//
// `seed` registers a fleet the way agents do: one agent hello per server on the gateway's
// internal hello topic, then it polls the registry until every device is listed.
// `load` sends an open-loop load at a fixed rate over keep-alive HTTP/1.1 connections: first to
// `GET /health` (the baseline: the HTTP stack without database work), then a mix of device pages
// of one site and single devices. Each request has a scheduled send time and its latency is
// counted from that time, so a server that falls behind shows as latency and the client does not
// hide it by waiting (no coordinated omission).

import ArgumentParser
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

@main
struct RegistryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry-bench",
        abstract: "Seed a registry with a simulated fleet, or load its device endpoints and print latencies.",
        subcommands: [Seed.self, Load.self]
    )
}

/// One unbuffered line on standard output.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Sleeps until `time` on the monotonic clock; returns at once when it has passed.
func sleep(until time: Double) {
    let delay = time - now()
    guard delay > 0 else { return }
    var request = timespec(tv_sec: Int(delay), tv_nsec: Int((delay - delay.rounded(.down)) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

// MARK: - seed

struct Seed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish one agent hello per server and wait until the registry lists every device.")

    @Option(help: "Broker URL.") var mqttURL = "mqtt://127.0.0.1:1883"
    @Option(help: "Registry base URL.") var registryURL = "http://127.0.0.1:8081"
    @Option(help: "Number of sites (bench-site-NNN).") var sites = 100
    @Option(help: "Number of servers (bench-srv-NNNN), spread over the sites.") var servers = 1_000
    @Option(help: "Devices per server (cam-NNN).") var devicesPerServer = 100
    @Option(help: "Hellos awaiting their PUBACK at once.") var window = 100
    @Option(help: "Give up after this many seconds.") var timeout = 900.0

    func validate() throws {
        guard sites > 0, servers >= sites, devicesPerServer > 0, window > 0 else {
            throw ValidationError("need sites > 0, servers >= sites, devices-per-server > 0, window > 0")
        }
    }

    func run() async throws {
        let endpoint = try Endpoint(url: registryURL)
        var mqttConfiguration = try MQTTConfiguration(url: mqttURL, clientID: "registry-bench-seed-\(getpid())")
        mqttConfiguration.subscriptionBufferCapacity = 16
        var logger = Logger(label: "registry-bench")
        logger.logLevel = .warning
        let client = try MQTTClient(configuration: mqttConfiguration, logger: logger)
        let hellos = try (0..<servers).map { try Envelope(payload: hello(server: $0)).encoded() }
        let expected = servers * devicesPerServer
        let topic = Topic.agentHelloEvents.path
        let window = window

        let runner = Task { try await client.run() }
        defer { runner.cancel() }
        try await client.waitUntilConnected(timeout: .seconds(10))

        let before = try registeredDevices(endpoint)
        let start = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, hello) in hellos.enumerated() {
                if index >= window { try await group.next() }
                group.addTask { try await client.publish(topic, payload: hello, qos: .atLeastOnce) }
            }
            try await group.waitForAll()
        }
        let published = now() - start
        say(
            "published=\(hellos.count) " + String(format: "seconds=%.3f rate=%.0f", published, Double(hellos.count) / published)
                + " (hellos acknowledged by the broker)")
        if before > 0 { say("note: \(before) bench devices were registered before this run") }

        var registered = before
        var lastChange = now()
        while registered < expected {
            try await Task.sleep(for: .milliseconds(100))
            let count = try registeredDevices(endpoint)
            if count != registered { lastChange = now() }
            registered = count
            if now() - start > timeout || now() - lastChange > 60 {
                throw ValidationError("only \(registered) of \(expected) devices registered after \(Int(now() - start)) s")
            }
        }
        // The rate counts the devices this run added.
        let seconds = now() - start
        say("registered=\(registered) " + String(format: "seconds=%.3f rate=%.0f", seconds, Double(registered - before) / seconds))
    }

    private func hello(server: Int) -> AgentHello {
        let site = server % sites
        return AgentHello(
            agentID: String(format: "bench-srv-%04d", server),
            site: AgentHello.Site(id: String(format: "bench-site-%03d", site), name: String(format: "Bench site %03d", site)),
            serverName: String(format: "bench server %04d", server),
            agentVersion: "0.0.0-bench",
            capacity: AgentHello.Capacity(cpuCores: 16, memoryBytes: 64 << 30, gpus: [AgentHello.GPU(type: "nvidia-l4", count: 2)]),
            supportsPipelines: true,
            devices: (0..<devicesPerServer).map {
                AgentHello.Device(key: String(format: "cam-%03d", $0), name: String(format: "camera %03d", $0), kind: "camera")
            },
            observedAt: Date()
        )
    }

    private struct SiteList: Decodable {
        struct Site: Decodable {
            var id: String
            var deviceCount: Int

            enum CodingKeys: String, CodingKey {
                case id
                case deviceCount = "device_count"
            }
        }
        var items: [Site]
    }

    /// The devices the registry lists in the bench sites.
    private func registeredDevices(_ endpoint: Endpoint) throws -> Int {
        let connection = HTTPConnection(endpoint)
        defer { connection.close() }
        let response = try connection.get(HTTPConnection.request("/v1/sites", endpoint: endpoint))
        guard response.status == 200 else { throw HTTPError("GET /v1/sites answered \(response.status)") }
        let list = try JSONDecoder().decode(SiteList.self, from: Data(response.body))
        return list.items.filter { $0.id.hasPrefix("bench-site-") }.reduce(0) { $0 + $1.deviceCount }
    }
}

// MARK: - load

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open-loop load at a fixed rate: GET /health (baseline), then device pages and single devices of one site.")

    @Option(help: "Registry base URL.") var registryURL = "http://127.0.0.1:8081"
    @Option(help: "Requests per second (the mix: half pages, half single devices).") var rate = 1_000.0
    @Option(help: "Seconds of each measured phase.") var seconds = 10.0
    @Option(help: "Unmeasured seconds at the same rate before each phase.") var warmup = 2.0
    @Option(help: "Keep-alive connections (requests in flight at most).") var connections = 16
    @Option(help: "The site whose devices are listed and fetched.") var site = "bench-site-007"
    @Option(help: "Devices per page.") var pageSize = 100

    func validate() throws {
        guard rate > 0, seconds > 0, warmup >= 0, connections > 0, (1...1_000).contains(pageSize) else {
            throw ValidationError("need rate > 0, seconds > 0, warmup >= 0, connections > 0, page-size 1...1000")
        }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let endpoint = try Endpoint(url: registryURL)
        let (ids, pages) = try walk(endpoint)
        guard !ids.isEmpty else { throw HTTPError("site '\(site)' has no devices; run `registry-bench seed` first") }
        say("site=\(site) devices=\(ids.count) pages=\(pages) page_size=\(pageSize)")
        say(
            "load: open loop, \(fmt(rate)) req/s for \(fmt(seconds)) s per phase after \(fmt(warmup)) s warm-up,"
                + " \(connections) keep-alive connections; latency from each request's scheduled send time")

        let baseline = measure(.health, endpoint: endpoint)
        let inventory = measure(.inventory(site: site, pageSize: pageSize, deviceIDs: ids), endpoint: endpoint)
        let rows: [(String, Stats)] = [("baseline", baseline[.health]!), ("pages", inventory[.page]!), ("gets", inventory[.device]!)]
        for (phase, stats) in rows {
            say(
                "result phase=\(phase) requests=\(stats.requests) rate=\(String(format: "%.1f", stats.rate)) errors=\(stats.errors)"
                    + " p50=\(ms(stats.p50)) p90=\(ms(stats.p90)) p99=\(ms(stats.p99)) max=\(ms(stats.max))")
        }
        let base = baseline[.health]!
        say(
            "ratio pages_p99=\(ratio(inventory[.page]!.p99, base.p99)) gets_p99=\(ratio(inventory[.device]!.p99, base.p99))"
                + " pages_p50=\(ratio(inventory[.page]!.p50, base.p50)) gets_p50=\(ratio(inventory[.device]!.p50, base.p50))")
    }

    /// Walks the site's pages once: the device ids for the single gets, and the number of pages.
    private func walk(_ endpoint: Endpoint) throws -> ([String], Int) {
        struct DevicePage: Decodable {
            struct Item: Decodable { var id: String }
            var items: [Item]
            var nextCursor: String?

            enum CodingKeys: String, CodingKey {
                case items
                case nextCursor = "next_cursor"
            }
        }
        let connection = HTTPConnection(endpoint)
        defer { connection.close() }
        var ids: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let path = Mix.pagePath(site: site, pageSize: pageSize, cursor: cursor)
            let response = try connection.get(HTTPConnection.request(path, endpoint: endpoint))
            guard response.status == 200 else { throw HTTPError("GET \(path) answered \(response.status)") }
            let page = try JSONDecoder().decode(DevicePage.self, from: Data(response.body))
            ids += page.items.map(\.id)
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil
        return (ids, pages)
    }

    /// A warm-up run, then the measured run of the same mix.
    private func measure(_ mix: Mix, endpoint: Endpoint) -> [RequestKind: Stats] {
        if warmup > 0 {
            _ = LoadRun(mix: mix, endpoint: endpoint, rate: rate, total: Int(rate * warmup), connections: connections).run()
        }
        return LoadRun(mix: mix, endpoint: endpoint, rate: rate, total: Int(rate * seconds), connections: connections).run()
    }

    private func fmt(_ value: Double) -> String { String(format: "%g", value) }
    private func ms(_ seconds: Double) -> String { String(format: "%.3f", seconds * 1_000) }
    private func ratio(_ value: Double, _ base: Double) -> String { base > 0 ? String(format: "%.2f", value / base) : "n/a" }
}

enum RequestKind: Hashable, Sendable {
    case health
    case page
    case device
}

/// What a load run asks for.
enum Mix: Sendable {
    /// `GET /health` only.
    case health
    /// Even requests walk the site's pages, odd requests get one device.
    case inventory(site: String, pageSize: Int, deviceIDs: [String])

    var kinds: [RequestKind] {
        switch self {
        case .health: [.health]
        case .inventory: [.page, .device]
        }
    }

    static func pagePath(site: String, pageSize: Int, cursor: String?) -> String {
        var path = "/v1/devices?site=\(escaped(site))&limit=\(pageSize)"
        if let cursor { path += "&cursor=\(escaped(cursor))" }
        return path
    }

    private static func escaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}

/// Latencies and counts of one kind of request in one run.
struct Stats: Sendable {
    var requests = 0
    var errors = 0
    var rate = 0.0
    var p50 = 0.0
    var p90 = 0.0
    var p99 = 0.0
    var max = 0.0

    init(requests: Int, errors: Int, latencies: [Double], elapsed: Double) {
        self.requests = requests
        self.errors = errors
        rate = elapsed > 0 ? Double(requests) / elapsed : 0
        let sorted = latencies.sorted()
        guard !sorted.isEmpty else { return }
        p50 = sorted.quantileOfSorted(0.50)
        p90 = sorted.quantileOfSorted(0.90)
        p99 = sorted.quantileOfSorted(0.99)
        max = sorted[sorted.count - 1]
    }
}

/// One open-loop run: request `k` is due at `start + k / rate`. One thread per connection takes
/// the next request when it is free and sends it at its due time (or at once when it is late); a
/// request's latency runs from its due time to the end of its response.
struct LoadRun: Sendable {
    let mix: Mix
    let endpoint: Endpoint
    let rate: Double
    let total: Int
    let connections: Int

    /// What one connection's thread measured.
    struct Tally: Sendable {
        var requests: [RequestKind: Int] = [:]
        var errors: [RequestKind: Int] = [:]
        var latencies: [RequestKind: [Double]] = [:]
        var lastCompletion = 0.0
        var firstError: String?
    }

    func run() -> [RequestKind: Stats] {
        let next = Ticket()
        let tallies = Tallies()
        let done = DispatchGroup()
        // Time for the threads to start before the first request is due.
        let start = now() + 0.05
        for _ in 0..<connections {
            done.enter()
            let thread = Thread {
                let tally = work(next: next, start: start)
                tallies.all.withLock { $0.append(tally) }
                done.leave()
            }
            thread.start()
        }
        done.wait()

        let all = tallies.all.withLock { $0 }
        let elapsed = (all.map(\.lastCompletion).max() ?? start) - start
        if let error = all.compactMap(\.firstError).first {
            FileHandle.standardError.write(Data("registry-bench: first error: \(error)\n".utf8))
        }
        var stats: [RequestKind: Stats] = [:]
        for kind in mix.kinds {
            stats[kind] = Stats(
                requests: all.reduce(0) { $0 + $1.requests[kind, default: 0] },
                errors: all.reduce(0) { $0 + $1.errors[kind, default: 0] },
                latencies: all.flatMap { $0.latencies[kind, default: []] },
                elapsed: elapsed
            )
        }
        return stats
    }

    /// One connection's loop.
    private func work(next: Ticket, start: Double) -> Tally {
        let connection = HTTPConnection(endpoint)
        defer { connection.close() }
        var tally = Tally()
        for kind in mix.kinds { tally.latencies[kind] = [] }
        var cursor: String?
        while true {
            let index = next.take()
            guard index < total else { break }
            let due = start + Double(index) / rate
            let kind: RequestKind
            let path: String
            switch mix {
            case .health:
                kind = .health
                path = "/health"
            case .inventory(let site, let pageSize, let ids):
                if index % 2 == 0 {
                    kind = .page
                    path = Mix.pagePath(site: site, pageSize: pageSize, cursor: cursor)
                } else {
                    kind = .device
                    path = "/v1/devices/\(ids[(index / 2) % ids.count])"
                }
            }
            let request = HTTPConnection.request(path, endpoint: endpoint)
            sleep(until: due)
            var ok = false
            do {
                let response = try connection.get(request)
                if response.status == 200 {
                    ok = true
                    // Follow the page's next_cursor; past the last page, start over.
                    if kind == .page { cursor = HTTPConnection.nextCursor(in: response.body) }
                } else if tally.firstError == nil {
                    tally.firstError = "GET \(path) answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))"
                }
            } catch {
                connection.close()
                if tally.firstError == nil { tally.firstError = "GET \(path): \(error)" }
            }
            let end = now()
            if !ok && kind == .page { cursor = nil }
            tally.requests[kind, default: 0] += 1
            if ok {
                tally.latencies[kind, default: []].append(end - due)
            } else {
                tally.errors[kind, default: 0] += 1
            }
            tally.lastCompletion = Swift.max(tally.lastCompletion, end)
        }
        return tally
    }
}

/// What the connection threads measured, gathered as each one ends.
final class Tallies: Sendable {
    let all = Mutex<[LoadRun.Tally]>([])
}

/// Hands out request numbers to the connection threads, in order.
final class Ticket: Sendable {
    private let counter = Atomic<Int>(0)

    func take() -> Int {
        counter.add(1, ordering: .relaxed).oldValue
    }
}

// MARK: - A small blocking HTTP/1.1 client

struct HTTPError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where the registry listens: a resolved socket address and the Host header.
struct Endpoint: Sendable {
    let family: Int32
    let address: [UInt8]
    let host: String

    init(url text: String) throws {
        guard let url = URLComponents(string: text), url.scheme == "http", let name = url.host, !name.isEmpty else {
            throw ValidationError("'\(text)' is not an http://host[:port] URL")
        }
        let port = url.port ?? 80
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = streamSocketType
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, String(port), &hints, &found)
        guard status == 0, let first = found, let address = first.pointee.ai_addr else {
            throw HTTPError("cannot resolve \(name): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        family = first.pointee.ai_family
        self.address = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
        host = url.port.map { "\(name):\($0)" } ?? name
    }
}

// The C calls whose names the connection's members shadow.
private func openSocket(_ family: Int32) -> Int32 { socket(family, streamSocketType, 0) }
private func closeSocket(_ fd: Int32) { _ = close(fd) }

/// One keep-alive connection, used by one thread. Answers must carry a Content-Length.
final class HTTPConnection {
    struct Response {
        var status: Int
        var body: ArraySlice<UInt8>
    }

    private let endpoint: Endpoint
    private var socket: Int32 = -1
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Received bytes not consumed yet: `buffer[start..<end]`.
    private var start = 0
    private var end = 0

    init(_ endpoint: Endpoint) {
        self.endpoint = endpoint
    }

    deinit { close() }

    static func request(_ path: String, endpoint: Endpoint) -> [UInt8] {
        Array("GET \(path) HTTP/1.1\r\nHost: \(endpoint.host)\r\nConnection: keep-alive\r\nAccept: application/json\r\n\r\n".utf8)
    }

    /// The `next_cursor` of a page body, without decoding the page (keys are sorted: it is last).
    static func nextCursor(in body: ArraySlice<UInt8>) -> String? {
        let key = Array("\"next_cursor\":\"".utf8)
        guard body.count > key.count else { return nil }
        var index = body.endIndex - key.count
        while index >= body.startIndex {
            if body[index] == key[0] && body[index..<index + key.count].elementsEqual(key) {
                let valueStart = index + key.count
                guard let valueEnd = body[valueStart...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
                return String(decoding: body[valueStart..<valueEnd], as: UTF8.self)
            }
            index -= 1
        }
        return nil
    }

    func close() {
        if socket >= 0 { closeSocket(socket) }
        socket = -1
        start = 0
        end = 0
    }

    /// Sends `request` and reads its response. A reused connection that the server closed while
    /// idle is reopened once.
    func get(_ request: [UInt8]) throws -> Response {
        let reused = socket >= 0
        if !reused { try open() }
        do {
            try send(request)
            return try readResponse()
        } catch is ClosedBeforeResponse where reused {
            close()
            try open()
            try send(request)
            return try readResponse()
        }
    }

    private struct ClosedBeforeResponse: Error, CustomStringConvertible {
        var description: String { "the server closed the connection before answering" }
    }

    private func open() throws {
        let fd = openSocket(endpoint.family)
        guard fd >= 0 else { throw HTTPError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A server that stops answering fails the request instead of hanging the run.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let status = endpoint.address.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            closeSocket(fd)
            throw HTTPError("connect to \(endpoint.host): \(reason)")
        }
        socket = fd
        start = 0
        end = 0
    }

    private func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(socket, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    if errno == EPIPE || errno == ECONNRESET { throw ClosedBeforeResponse() }
                    throw HTTPError("write: \(String(cString: strerror(errno)))")
                }
                offset += written
            }
        }
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    private func fill() throws -> Bool {
        if start > 0 && start == end {
            start = 0
            end = 0
        }
        if end == buffer.count {
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            } else {
                buffer += [UInt8](repeating: 0, count: buffer.count)
            }
        }
        while true {
            let count = buffer.withUnsafeMutableBytes { raw in read(socket, raw.baseAddress! + end, raw.count - end) }
            if count > 0 {
                end += count
                return true
            }
            if count == 0 { return false }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return false }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw HTTPError("no answer within 10 s") }
            throw HTTPError("read: \(String(cString: strerror(errno)))")
        }
    }

    private func readResponse() throws -> Response {
        // The head: up to the empty line.
        var headEnd: Int?
        var searchFrom = start
        while headEnd == nil {
            if end - searchFrom >= 4 {
                for index in searchFrom...(end - 4)
                where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
                    headEnd = index
                    break
                }
                searchFrom = Swift.max(start, end - 3)
            }
            if headEnd == nil {
                let before = end - start
                let offset = searchFrom - start
                guard try fill() else {
                    if before == 0 { throw ClosedBeforeResponse() }
                    throw HTTPError("the server closed the connection in a response head")
                }
                searchFrom = start + offset
            }
        }
        let head = String(decoding: buffer[start..<headEnd!], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw HTTPError("not an HTTP/1.x status line: \(lines.first ?? "")")
        }
        var length: Int?
        var closes = false
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "content-length": length = Int(value)
            case "connection": closes = value.lowercased() == "close"
            case "transfer-encoding": throw HTTPError("chunked answers are not supported (Transfer-Encoding: \(value))")
            default: break
            }
        }
        guard let length else { throw HTTPError("an answer without Content-Length") }
        start = headEnd! + 4
        while end - start < length {
            guard try fill() else { throw HTTPError("the server closed the connection in a response body") }
        }
        let body = buffer[start..<start + length]
        start += length
        if closes {
            let copy = Response(status: status, body: ArraySlice(Array(body)))
            close()
            return copy
        }
        return Response(status: status, body: body)
    }
}
