/// Text as an MQTT 5 UTF-8 string that a broker takes.
///
/// MQTT 5 forbids U+0000 in its strings and asks that control characters and non-characters be
/// left out (section 1.5.4); Mosquitto refuses a packet with them as malformed and disconnects
/// the client, and libmosquitto then sends the same packet again after every reconnect. A
/// property whose text a client chose (an error naming an unknown model version) would take the
/// service off the bus for good, so such text is escaped before it reaches libmosquitto.
package enum MQTTString {
    /// The longest string MQTT can carry, in bytes.
    package static let maximumBytes = 65_535

    /// `text` with each code point a broker may refuse written as `\u{85}`, cut at a character
    /// boundary to ``maximumBytes``; `text` itself when it has none and fits.
    package static func encodable(_ text: String) -> String {
        if text.utf8.count <= maximumBytes && text.unicodeScalars.allSatisfy(isAllowed) { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            let piece = isAllowed(scalar) ? String(scalar) : "\\u{\(String(scalar.value, radix: 16))}"
            guard result.utf8.count + piece.utf8.count <= maximumBytes else { break }
            result += piece
        }
        return result
    }

    /// Not U+0000, a C0 or C1 control character, nor a Unicode non-character.
    package static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x20 || (0x7F...0x9F).contains(value) { return false }
        if (0xFDD0...0xFDEF).contains(value) || value & 0xFFFE == 0xFFFE { return false }
        return true
    }
}
