import Foundation
import Testing

@testable import FleetContract
@testable import Registry

@Suite("Hand-written device JSON")
struct DeviceJSONTests {
    private func parsed(_ data: Data) throws -> NSDictionary {
        try #require(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }

    private let awkward = [
        "plain", "quote \" and backslash \\", "line\nbreak\ttab\r", "control \u{01}\u{1f}", "ünïcödé 🎥", "", "</script>",
    ]

    @Test("a device's hand-written JSON equals JSONEncoder's, for awkward strings, with and without a group")
    func device() throws {
        for (index, text) in awkward.enumerated() {
            let device = Device(
                id: UUID(), serverID: "srv-\(index)", siteID: "site", key: text, name: text, kind: "camera", enabled: index % 2 == 0,
                gone: index % 3 == 0, groupID: index % 2 == 0 ? UUID() : nil, labels: [text, "b"], reachable: true, supportsPipelines: false
            )
            #expect(try parsed(Data(device.json)) == parsed(ContractCoding.encoder.encode(device)), "\(text.debugDescription)")
        }
    }

    @Test("a page's hand-written JSON equals JSONEncoder's, with and without a next cursor")
    func page() throws {
        let devices = awkward.map { text in
            Device(
                id: UUID(), serverID: "s", siteID: "t", key: text, name: text, kind: "k", enabled: true, gone: false, groupID: nil,
                labels: [], reachable: false, supportsPipelines: true
            )
        }
        for page in [Page(items: devices, nextCursor: "MTIz"), Page(items: [], nextCursor: nil)] {
            #expect(try parsed(Data(page.json)) == parsed(ContractCoding.encoder.encode(page)))
        }
    }

    @Test("a list's hand-written JSON (the devices-query answer) equals JSONEncoder's, empty or not")
    func list() throws {
        let devices = awkward.map { text in
            Device(
                id: UUID(), serverID: "s", siteID: "t", key: text, name: text, kind: "k", enabled: false, gone: true, groupID: UUID(),
                labels: [text], reachable: true, supportsPipelines: true
            )
        }
        for list in [devices, []] {
            let written = try #require(try JSONSerialization.jsonObject(with: Data(list.json)) as? NSArray)
            #expect(written == (try JSONSerialization.jsonObject(with: ContractCoding.encoder.encode(list)) as? NSArray))
            #expect(written.count == list.count)
        }
    }
}
