import Crypto
package import Foundation
package import Hummingbird
import Synchronization

/// What an API key may do: each role may do what the one before it may.
package enum APIRole: String, Codable, Sendable, CaseIterable, Comparable {
    /// Reads.
    case viewer
    /// Reads, and changes pipelines, operations and deployments.
    case `operator`
    /// Everything: keys, enrolments, the catalogue, deletions.
    case admin

    private var rank: Int {
        switch self {
        case .viewer: 0
        case .operator: 1
        case .admin: 2
        }
    }

    package static func < (lhs: APIRole, rhs: APIRole) -> Bool { lhs.rank < rhs.rank }
}

/// What a valid API key says about its holder.
package struct APIPrincipal: Sendable, Equatable {
    /// The key's id (`jti`): what a revocation names.
    package var keyID: String
    /// The key's name, for the audit trail.
    package var name: String
    package var role: APIRole
    /// Nil: the key does not expire.
    package var expiresAt: Date?

    package init(keyID: String, name: String, role: APIRole, expiresAt: Date?) {
        self.keyID = keyID
        self.name = name
        self.role = role
        self.expiresAt = expiresAt
    }

    /// The holder of the request being handled (set by ``APIKeyMiddleware``); nil where keys are
    /// not checked.
    @TaskLocal package static var current: APIPrincipal?
}

/// API keys are JSON Web Tokens signed with HMAC-SHA256 (`HS256`) under a secret every service
/// shares (`MODELFLEET_API_SIGNING_KEY_FILE`), so each service checks a key by itself, with no
/// call to anyone; the registry mints them and publishes the revoked ones (docs/security.md).
package struct APIKeySigner: Sendable {
    private let key: SymmetricKey

    package init(secret: Data) {
        key = SymmetricKey(data: secret)
    }

    /// The secret in the file at `path`: its bytes, at least 32 of them (a line end excluded).
    package static func load(path: String, variable: String) throws(ConfigurationError) -> APIKeySigner {
        guard var data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(variable: variable, reason: "'\(path)' cannot be read")
        }
        while let last = data.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { data.removeLast() }
        guard data.count >= 32 else {
            throw ConfigurationError(variable: variable, reason: "'\(path)' holds \(data.count) bytes; at least 32 are needed")
        }
        return APIKeySigner(secret: data)
    }

    private struct Header: Codable {
        var alg = "HS256"
        var typ = "JWT"
    }

    private struct Claims: Codable {
        var jti: String
        var sub: String
        var role: APIRole
        var iat: Int64
        var exp: Int64?
    }

    /// A new key for `principal`.
    package func mint(_ principal: APIPrincipal, issuedAt: Date = Date()) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let header = Self.base64URL((try? encoder.encode(Header())) ?? Data())
        let claims = Claims(
            jti: principal.keyID, sub: principal.name, role: principal.role, iat: Int64(issuedAt.timeIntervalSince1970),
            exp: principal.expiresAt.map { Int64($0.timeIntervalSince1970) })
        let payload = Self.base64URL((try? encoder.encode(claims)) ?? Data())
        let signed = "\(header).\(payload)"
        return "\(signed).\(Self.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(signed.utf8), using: key))))"
    }

    /// Why a key is not valid.
    package enum Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        case malformed
        case badSignature
        case expired(Date)

        package var description: String {
            switch self {
            case .malformed: "the API key is not a ModelFleet key"
            case .badSignature: "the API key's signature does not match: it was not issued by this fleet, or was altered"
            case .expired(let date): "the API key expired at \(ISO8601DateFormatter().string(from: date))"
            }
        }
    }

    /// The principal `token` names, when its signature is this fleet's and it has not expired.
    package func verify(_ token: Substring, now: Date = Date()) throws(Invalid) -> APIPrincipal {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = Self.decodeBase64URL(parts[2]) else { throw .malformed }
        let signed = Data(token[token.startIndex..<parts[2].startIndex].dropLast().utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: key) else { throw .badSignature }
        guard let header = Self.decodeBase64URL(parts[0]).flatMap({ try? JSONDecoder().decode(Header.self, from: $0) }), header.alg == "HS256",
            let claims = Self.decodeBase64URL(parts[1]).flatMap({ try? JSONDecoder().decode(Claims.self, from: $0) })
        else { throw .malformed }
        let expiresAt = claims.exp.map { Date(timeIntervalSince1970: TimeInterval($0)) }
        if let expiresAt, expiresAt <= now { throw .expired(expiresAt) }
        return APIPrincipal(keyID: claims.jti, name: claims.sub, role: claims.role, expiresAt: expiresAt)
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// The ids of revoked keys, as the registry last published them (retained on
/// ``FleetContract/Topic/apiKeyRevocations``).
package final class RevokedAPIKeys: Sendable {
    private let ids = Mutex<Set<String>>([])

    package init() {}

    package func replace(with revoked: Set<String>) { ids.withLock { $0 = revoked } }
    package func contains(_ keyID: String) -> Bool { ids.withLock { $0.contains(keyID) } }
}

/// What role a request needs: a service's own rules over the default (reads need `viewer`, other
/// methods `operator`).
package struct APIAccessRules: Sendable {
    /// `(method, path prefix, role)`: the first that matches decides; a nil method matches any.
    package var rules: [(method: HTTPRequest.Method?, prefix: String, role: APIRole)]

    package init(_ rules: [(method: HTTPRequest.Method?, prefix: String, role: APIRole)] = []) {
        self.rules = rules
    }

    package func role(for method: HTTPRequest.Method, path: String) -> APIRole {
        for rule in rules where (rule.method == nil || rule.method == method) && path.hasPrefix(rule.prefix) {
            return rule.role
        }
        return method == .get || method == .head ? .viewer : .operator
    }
}

/// A per-key token bucket: `rate` requests a second, bursts of `burst`.
package final class APIRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var at: ContinuousClock.Instant
    }

    private let buckets = Mutex<[String: Bucket]>([:])
    package let rate: Double
    package let burst: Double

    package init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Nil: allowed, a token taken. Else the seconds until the next token.
    package func take(_ keyID: String, now: ContinuousClock.Instant = .now) -> Int? {
        buckets.withLock { buckets in
            var bucket = buckets[keyID] ?? Bucket(tokens: burst, at: now)
            let elapsed = Double((now - bucket.at).components.seconds) + Double((now - bucket.at).components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
            bucket.at = now
            defer { buckets[keyID] = bucket }
            guard bucket.tokens >= 1 else { return max(1, Int(((1 - bucket.tokens) / rate).rounded(.up))) }
            bucket.tokens -= 1
            if buckets.count > 100_000 { buckets = [:] }  // keys are few; never grows without bound
            return nil
        }
    }
}

/// Checks every request's API key (`Authorization: Bearer <key>`), except `/health` and `/ready`:
/// 401 without a valid key, 403 for a role that may not, 429 past the key's rate; `/metrics` also
/// takes the scrape token. The holder is ``APIPrincipal/current`` while the request is handled.
package struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let signer: APIKeySigner
    let revoked: RevokedAPIKeys
    let rules: APIAccessRules
    let limiter: APIRateLimiter
    let scrapeToken: String?

    package init(signer: APIKeySigner, revoked: RevokedAPIKeys, rules: APIAccessRules, limiter: APIRateLimiter, scrapeToken: String?) {
        self.signer = signer
        self.revoked = revoked
        self.rules = rules
        self.limiter = limiter
        self.scrapeToken = scrapeToken
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/health" || path == "/ready" { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw Self.unauthorized("unauthenticated", "an API key is required: Authorization: Bearer <key> (docs/security.md)")
        }
        let token = header.dropFirst("Bearer ".count).trimmingCharacters(in: .whitespaces)
        if path == "/metrics", let scrapeToken, Self.equalInConstantTime(token, scrapeToken) { return try await next(request, context) }
        let principal: APIPrincipal
        do {
            principal = try signer.verify(Substring(token))
        } catch {
            throw Self.unauthorized("invalid_api_key", error.description)
        }
        guard !revoked.contains(principal.keyID) else { throw Self.unauthorized("invalid_api_key", "the API key '\(principal.name)' was revoked") }
        let needed = rules.role(for: request.method, path: path)
        guard principal.role >= needed else {
            throw APIError(
                .forbidden, code: "forbidden",
                message:
                    "the API key '\(principal.name)' has the role \(principal.role.rawValue); \(request.method.rawValue) \(path) needs \(needed.rawValue)"
            )
        }
        if let wait = limiter.take(principal.keyID) {
            var response = try APIError(
                .tooManyRequests, code: "rate_limited",
                message:
                    "the API key '\(principal.name)' is past \(limiter.rate.rounded() == limiter.rate ? "\(Int(limiter.rate))" : "\(limiter.rate)") requests a second; retry after \(wait) s"
            ).response(from: request, context: context)
            response.headers[.retryAfter] = "\(wait)"
            return response
        }
        return try await APIPrincipal.$current.withValue(principal) { try await next(request, context) }
    }

    private static func unauthorized(_ code: String, _ message: String) -> APIError {
        APIError(.unauthorized, code: code, message: message, headers: [.wwwAuthenticate: "Bearer"])
    }

    private static func equalInConstantTime(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
