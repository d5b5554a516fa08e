import Foundation
import Hummingbird
import Testing

@testable import ServiceRuntime

@Suite("API keys: tokens, roles and the rate limit")
struct APIKeyTests {
    let signer = APIKeySigner(secret: Data(repeating: 7, count: 32))
    let principal = APIPrincipal(keyID: "0a0b", name: "alice", role: .operator, expiresAt: nil)

    @Test("a minted key verifies to its principal; another secret's, an altered one and garbage do not")
    func roundTrip() throws {
        let token = signer.mint(principal)
        #expect(try signer.verify(Substring(token)) == principal)
        let other = APIKeySigner(secret: Data(repeating: 8, count: 32))
        #expect(throws: APIKeySigner.Invalid.badSignature) { try other.verify(Substring(token)) }
        // The role raised to admin in the claims, the signature kept.
        let parts = token.split(separator: ".").map(String.init)
        let claims = try #require(Data(base64Encoded: parts[1].padding(toLength: (parts[1].count + 3) / 4 * 4, withPad: "=", startingAt: 0)))
        let forged = String(decoding: claims, as: UTF8.self).replacingOccurrences(of: "operator", with: "admin")
        let forgedPart = Data(forged.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        #expect(throws: APIKeySigner.Invalid.badSignature) { try signer.verify(Substring("\(parts[0]).\(forgedPart).\(parts[2])")) }
        for garbage in ["", "abc", "a.b", "a.b.c.d", "...."] {
            #expect(throws: APIKeySigner.Invalid.self) { try signer.verify(Substring(garbage)) }
        }
    }

    @Test("an expired key is refused, naming when it expired")
    func expiry() throws {
        let expires = Date(timeIntervalSince1970: 2_000_000_000)
        let token = signer.mint(APIPrincipal(keyID: "1", name: "temp", role: .viewer, expiresAt: expires))
        #expect(try signer.verify(Substring(token), now: expires.addingTimeInterval(-1)).expiresAt == expires)
        #expect(throws: APIKeySigner.Invalid.expired(expires)) { try signer.verify(Substring(token), now: expires) }
    }

    @Test("roles: reads need viewer, writes operator, a service's own rules first")
    func rules() {
        let rules = APIAccessRules([(nil, "/v1/keys", .admin), (.get, "/v1/enrollments", .viewer), (nil, "/v1/enrollments", .admin)])
        #expect(rules.role(for: .get, path: "/v1/sites") == .viewer)
        #expect(rules.role(for: .post, path: "/v1/sites") == .operator)
        #expect(rules.role(for: .get, path: "/v1/keys") == .admin)
        #expect(rules.role(for: .get, path: "/v1/enrollments") == .viewer)
        #expect(rules.role(for: .delete, path: "/v1/enrollments/a") == .admin)
        #expect(APIRole.viewer < .operator && APIRole.operator < .admin)
    }

    @Test("the rate limit: a burst, then one a 1/rate seconds, per key")
    func rateLimit() {
        let limiter = APIRateLimiter(rate: 2, burst: 3)
        let start = ContinuousClock.now
        #expect((0..<3).allSatisfy { _ in limiter.take("a", now: start) == nil })
        #expect(limiter.take("a", now: start) == 1)
        #expect(limiter.take("b", now: start) == nil, "another key has its own bucket")
        #expect(limiter.take("a", now: start + .milliseconds(500)) == nil, "half a second: one more token")
        #expect(limiter.take("a", now: start + .milliseconds(500)) != nil)
    }
}
