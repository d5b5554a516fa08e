import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOFoundationCompat
import Synchronization

/// Fetches model artifacts and checks them against their sha256 before a pipeline may use them.
///
/// `file://` artifacts are read in place; `http://` and `https://` ones are downloaded once into
/// `<state dir>/artifacts/<sha256>` and reused. Other schemes (`s3://`, `oci://`) need a fetcher
/// this agent does not have: the built-in runtime treats them as names only (they are what the
/// simulated fleets use), which `docs/edge-agent.md` says.
actor ArtifactStore {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Artifacts larger than this are refused, so that a wrong URI cannot fill the disk.
    static let maximumSize = 4 * 1024 * 1024 * 1024

    private let directory: URL
    /// Checked already, by "uri sha256": a pipeline restarted with the same stages does not hash again.
    private var verified: Set<String> = []
    /// The downloads of the apply under way, for in-progress reports.
    nonisolated let downloads = DownloadMeter()

    init(directory: URL) {
        self.directory = directory
    }

    /// Whether this store can fetch and check `uri`.
    nonisolated static func canFetch(_ uri: String) -> Bool {
        let scheme = uri.split(separator: ":", maxSplits: 1).first?.lowercased()
        return scheme == "file" || scheme == "http" || scheme == "https"
    }

    /// The local file of a checked artifact.
    func fetch(_ uri: String, sha256 expected: String) async throws -> URL {
        guard let url = URL(string: uri), let scheme = url.scheme?.lowercased() else {
            throw Failure(description: "artifact URI '\(uri)' is not a URL")
        }
        let key = "\(uri) \(expected)"
        switch scheme {
        case "file":
            if !verified.contains(key) {
                let digest = try Self.sha256(ofFile: url)
                guard digest == expected else {
                    throw Failure(description: "artifact \(uri) has sha256 \(digest), expected \(expected)")
                }
                verified.insert(key)
            }
            return url
        case "http", "https":
            let cached = directory.appendingPathComponent(expected)
            if verified.contains(key) || ((try? Self.sha256(ofFile: cached)) == expected) {
                verified.insert(key)
                return cached
            }
            var request = HTTPClientRequest(url: uri)
            request.headers.add(name: "User-Agent", value: "modelfleet-edge-agent/\(ModelFleetAgentVersion.current)")
            let response: HTTPClientResponse
            do {
                response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            } catch {
                throw Failure(description: "cannot fetch \(uri): \(error)")
            }
            guard response.status == .ok else { throw Failure(description: "cannot fetch \(uri): HTTP \(response.status.code)") }
            let length = response.headers.first(name: "content-length").flatMap { Int64($0) }
            if let length, length > Int64(Self.maximumSize) {
                throw Failure(description: "cannot fetch \(uri): \(length) bytes, more than the \(Self.maximumSize) an artifact may have")
            }
            let download = downloads.start(total: length)
            var bytes = Data()
            do {
                for try await chunk in response.body {
                    guard bytes.count + chunk.readableBytes <= Self.maximumSize else {
                        throw Failure(description: "more than the \(Self.maximumSize) bytes an artifact may have")
                    }
                    bytes.append(contentsOf: chunk.readableBytesView)
                    downloads.add(chunk.readableBytes, to: download)
                }
            } catch {
                throw Failure(description: "cannot fetch \(uri): \(error)")
            }
            let digest = SHA256.hash(data: bytes).hexString
            guard digest == expected else { throw Failure(description: "artifact \(uri) has sha256 \(digest), expected \(expected)") }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try bytes.write(to: cached, options: .atomic)
            verified.insert(key)
            return cached
        default:
            throw Failure(description: "artifact URI scheme '\(scheme)' cannot be fetched by this agent")
        }
    }

    /// The file's sha256, read in 1 MiB pieces.
    static func sha256(ofFile url: URL) throws -> String {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            throw Failure(description: "cannot read artifact \(url.path): \(error.localizedDescription)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().hexString
    }
}

extension Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}

/// How far the artifact downloads of one apply are: the bytes fetched, finished downloads included,
/// and their total when every server said it. ``reset()`` starts the count of the next apply.
final class DownloadMeter: Sendable {
    struct Figures: Sendable, Equatable {
        var fetched: Int64
        var total: Int64?
    }

    private struct Download {
        var fetched: Int64 = 0
        var total: Int64?
    }

    private let state = Mutex<(next: Int, downloads: [Int: Download])>((0, [:]))

    /// A new download of `total` bytes (nil: unknown); returns its handle.
    func start(total: Int64?) -> Int {
        state.withLock { state in
            state.next += 1
            state.downloads[state.next] = Download(total: total)
            return state.next
        }
    }

    func add(_ count: Int, to download: Int) {
        state.withLock { $0.downloads[download]?.fetched += Int64(count) }
    }

    func reset() {
        state.withLock { $0.downloads = [:] }
    }

    /// The downloads since the last reset together; nil when there is none.
    var current: Figures? {
        state.withLock { state in
            guard !state.downloads.isEmpty else { return nil }
            let values = state.downloads.values
            let totals = values.compactMap(\.total)
            return Figures(
                fetched: values.reduce(0) { $0 + $1.fetched }, total: totals.count == values.count ? totals.reduce(0, +) : nil)
        }
    }
}
