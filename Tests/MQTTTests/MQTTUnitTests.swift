import Foundation
import Testing

@testable import MQTT

@Suite("MQTT pure logic")
struct MQTTUnitTests {
    @Test("topic names reject wildcards, empty names and NUL", arguments: ["", "a/+/b", "a/#", "a\u{0}b"])
    func badTopicNames(_ topic: String) {
        #expect(throws: MQTTError.self) { try MQTTTopic.validateName(topic) }
    }

    @Test("valid filters", arguments: ["a/b", "a/+/c", "a/#", "#", "+", "$share/g/a/+/c", "$share/g/#"])
    func goodFilters(_ filter: String) throws {
        try MQTTTopic.validateFilter(filter)
    }

    @Test("invalid filters", arguments: ["", "a/#/b", "a/b#", "a/+b", "$share/g", "$share//a", "$share/g+/a", "$share/g/a/#/b"])
    func badFilters(_ filter: String) {
        #expect(throws: MQTTError.self) { try MQTTTopic.validateFilter(filter) }
    }

    @Test("a shared subscription matches topics without its $share prefix")
    func sharedMatchFilter() {
        #expect(MQTTTopic.matchFilter(of: "$share/group/a/+/c") == "a/+/c")
        #expect(MQTTTopic.matchFilter(of: "a/+/c") == "a/+/c")
        #expect(Mosquitto.topicMatches(filter: "a/+/c", topic: "a/b/c"))
        #expect(!Mosquitto.topicMatches(filter: "a/+/c", topic: "a/b/d"))
    }

    @Test("URLs give host, port, credentials and TLS")
    func urls() throws {
        let plain = try MQTTConfiguration(url: "mqtt://broker.example:1884", clientID: "c")
        #expect(plain.host == "broker.example" && plain.port == 1884 && plain.tls == nil && plain.username == nil)
        let secure = try MQTTConfiguration(url: "mqtts://user:p%40ss@broker.example", clientID: "c")
        #expect(secure.port == 8883 && secure.tls != nil && secure.username == "user" && secure.password == "p@ss")
        #expect(try MQTTConfiguration(url: "mqtt://h", clientID: "c").port == 1883)
    }

    @Test("bad URLs are refused", arguments: ["http://h:1", "mqtt://", "mqtt://h:70000", "mqtt://h/path", "not a url"])
    func badURLs(_ url: String) {
        #expect(throws: MQTTError.self) { try MQTTConfiguration(url: url, clientID: "c") }
    }

    @Test("backoff doubles up to its cap and jitters in the upper half")
    func backoff() {
        let backoff = MQTTConfiguration.Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(backoff.delay(attempt: 0, random: 1) == .milliseconds(100))
        #expect(backoff.delay(attempt: 3, random: 1) == .milliseconds(800))
        #expect(backoff.delay(attempt: 3, random: 0) == .milliseconds(400))
        #expect(backoff.delay(attempt: 10, random: 1) == .seconds(2))
        #expect(backoff.delay(attempt: 1000, random: 0.5) == .milliseconds(1500))
    }

    @Test("a buffer keeps at most its capacity, counts the rest, and wakes a parked consumer")
    func bufferBounds() async {
        let buffer = MessageBuffer(capacity: 3)
        let batch = (0..<5).map { MQTTMessage(topic: "t", payload: Data([UInt8($0)])) }
        #expect(buffer.append(batch) == 2)
        #expect(buffer.droppedCount == 2)
        var seen: [UInt8] = []
        for _ in 0..<3 { if let message = await buffer.next() { seen.append(message.payload[0]) } }
        #expect(seen == [0, 1, 2])

        async let parked = buffer.next()
        try? await Task.sleep(for: .milliseconds(20))
        buffer.append([MQTTMessage(topic: "t", payload: Data([9]))])
        #expect(await parked?.payload == Data([9]))

        buffer.append([MQTTMessage(topic: "t", payload: Data([7]))])
        buffer.finish()
        #expect(await buffer.next()?.payload == Data([7]), "what was queued before finish is still delivered")
        #expect(await buffer.next() == nil)
    }

    @Test("a batch is the next message and what is queued behind it, up to the limit, without waiting to fill")
    func bufferBatches() async {
        let buffer = MessageBuffer(capacity: 100)
        buffer.append((0..<5).map { MQTTMessage(topic: "t", payload: Data([UInt8($0)])) })
        #expect(await buffer.next(upTo: 3).map { $0.payload[0] } == [0, 1, 2])
        #expect(await buffer.next(upTo: 10).map { $0.payload[0] } == [3, 4], "only what is queued, not a full batch")

        // A parked batch consumer gets the first message that arrives, alone.
        async let parked = buffer.next(upTo: 10)
        try? await Task.sleep(for: .milliseconds(20))
        buffer.append([MQTTMessage(topic: "t", payload: Data([9]))])
        #expect(await parked.map { $0.payload[0] } == [9])

        buffer.append([MQTTMessage(topic: "t", payload: Data([7]))])
        buffer.finish()
        #expect(await buffer.next(upTo: 10).map { $0.payload[0] } == [7], "what was queued before finish is still delivered")
        #expect(await buffer.next(upTo: 10).isEmpty)
    }

    @Test("cancelling a waiting consumer ends the buffer")
    func bufferCancellation() async {
        let buffer = MessageBuffer(capacity: 3)
        let consumer = Task { await buffer.next() }
        try? await Task.sleep(for: .milliseconds(20))
        consumer.cancel()
        #expect(await consumer.value == nil)
        #expect(buffer.append([MQTTMessage(topic: "t", payload: Data())]) == 0)
        #expect(await buffer.next() == nil)
    }

    @Test("several consumers of one buffer each get their own messages, none twice, and all end on finish")
    func bufferConsumerPool() async {
        let buffer = MessageBuffer(capacity: 10_000)
        let received = await withTaskGroup(of: [Int].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var mine: [Int] = []
                    while let message = await buffer.next() { mine.append(Int(message.payload[0]) << 8 | Int(message.payload[1])) }
                    return mine
                }
            }
            // Consumers park first, then batches arrive, some smaller than the pool.
            try? await Task.sleep(for: .milliseconds(20))
            for start in stride(from: 0, to: 1000, by: 50) {
                buffer.append(
                    (start..<(start + (start % 100 == 0 ? 2 : 50))).map {
                        MQTTMessage(topic: "t", payload: Data([UInt8($0 >> 8), UInt8($0 & 0xff)]))
                    })
                await Task.yield()
            }
            try? await Task.sleep(for: .milliseconds(50))
            buffer.finish()
            var all: [[Int]] = []
            for await part in group { all.append(part) }
            return all
        }
        let flat = received.flatMap { $0 }
        #expect(flat.count == Set(flat).count, "a message went to two consumers")
        #expect(flat.count == (0..<20).reduce(0) { $0 + ($1 % 2 == 0 ? 2 : 50) })
    }

    @Test("text a broker may refuse is escaped for MQTT strings; other text is kept as it is")
    func encodableStrings() {
        #expect(MQTTString.encodable("unknown version 1.0.0-\u{85}") == "unknown version 1.0.0-\\u{85}")
        // Built at run time: the compiler refuses non-characters in a literal.
        let refused = [0x0, 0x9, 0x7f, 0xfdd0, 0xfffe, 0x1ffff].map { String(Unicode.Scalar($0)!) }
        #expect(MQTTString.encodable(refused.joined(separator: "-")) == #"\u{0}-\u{9}-\u{7f}-\u{fdd0}-\u{fffe}-\u{1ffff}"#)
        #expect(MQTTString.encodable("Kamera Süd 🚗, 東京") == "Kamera Süd 🚗, 東京")
        let long = MQTTString.encodable(String(repeating: "é", count: 40_000))
        #expect(long.utf8.count == 65_534 && long.allSatisfy { $0 == "é" }, "cut at a character boundary")
    }
}
