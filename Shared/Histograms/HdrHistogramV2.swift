internal import CZlib
package import Foundation

/// HdrHistogram's standard V2 encoding, compressed, as the Java, C, Go, Rust, JavaScript and
/// Python libraries write it (`encodeIntoCompressedByteBuffer`, Python's `encode()` before
/// base64):
///
/// ```text
/// compressed:   cookie 0x1c849314 | length of what follows (int32) | zlib(uncompressed)
/// uncompressed: cookie 0x1c849313 | payload length (int32) | normalizing index offset (int32)
///               | significant digits (int32) | lowest discernible value (int64)
///               | highest trackable value (int64) | integer-to-double ratio (float64) | payload
/// payload:      each count from index 0 to the last non-zero one as a ZigZag LEB128 integer,
///               a run of n > 1 zeros as -n
/// ```
/// All integers big-endian. Decoding accepts the cookies with any word-size nibble, a lowest
/// discernible value of 1 and a normalizing offset of 0 (what every library writes by default);
/// anything else is refused with its reason, never guessed at.
package enum HdrHistogramV2 {
    static let encodingCookie: UInt32 = 0x1c84_9313
    static let compressedCookie: UInt32 = 0x1c84_9314
    static let headerLength = 40
    /// Most bytes a decoded payload may inflate to: a full 3-digit layout up to an hour is
    /// 23,552 counts of at most 9 bytes.
    static let maximumInflatedBytes = 1 << 20

    package struct DecodingError: Error, Equatable, CustomStringConvertible {
        package let description: String
        init(_ description: String) { self.description = description }
    }

    /// The compressed encoding of `histogram` in `layout`.
    package static func encode(_ histogram: SparseHistogram, layout: HistogramLayout = .latencyMicroseconds) -> Data {
        var payload: [UInt8] = []
        payload.reserveCapacity(histogram.indexes.count * 3)
        var next = 0
        for (position, index) in histogram.indexes.enumerated() {
            let gap = Int(index) - next
            if gap == 1 {
                putZigZag(0, into: &payload)
            } else if gap > 1 {
                putZigZag(-Int64(gap), into: &payload)
            }
            putZigZag(Int64(clamping: histogram.counts[position]), into: &payload)
            next = Int(index) + 1
        }
        var inner: [UInt8] = []
        inner.reserveCapacity(headerLength + payload.count)
        put(encodingCookie, into: &inner)
        put(UInt32(payload.count), into: &inner)
        put(UInt32(0), into: &inner)
        put(UInt32(layout.significantDigits), into: &inner)
        put(UInt64(1), into: &inner)
        put(layout.highestTrackableValue, into: &inner)
        put((1.0).bitPattern, into: &inner)
        inner += payload

        var bound = compressBound(uLong(inner.count))
        var compressed = [UInt8](repeating: 0, count: Int(bound))
        let status = compressed.withUnsafeMutableBufferPointer { output in
            inner.withUnsafeBufferPointer { input in
                compress2(output.baseAddress, &bound, input.baseAddress, uLong(input.count), Z_DEFAULT_COMPRESSION)
            }
        }
        precondition(status == Z_OK, "zlib compress2 failed with \(status)")  // only on exhausted memory
        var data = Data(capacity: 8 + Int(bound))
        var head: [UInt8] = []
        put(compressedCookie, into: &head)
        put(UInt32(bound), into: &head)
        data.append(contentsOf: head)
        data.append(contentsOf: compressed[0..<Int(bound)])
        return data
    }

    /// The base64 text of ``encode(_:layout:)``: what agents put in their telemetry.
    package static func encodeBase64(_ histogram: SparseHistogram, layout: HistogramLayout = .latencyMicroseconds) -> String {
        encode(histogram, layout: layout).base64EncodedString()
    }

    /// Decodes a compressed encoding whose layout has `layout`'s significant digits; counts past
    /// `layout`'s highest trackable value are refused.
    package static func decode(_ data: Data, layout: HistogramLayout = .latencyMicroseconds) throws(DecodingError) -> SparseHistogram {
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else { throw DecodingError("shorter than the 8-byte compressed header") }
        let cookie = readUInt32(bytes, at: 0)
        guard cookie & ~0xf0 == compressedCookie & ~0xf0 else {
            throw DecodingError("cookie 0x\(String(cookie, radix: 16)) is not the V2 compressed encoding's (0x1c849314)")
        }
        let length = Int(readUInt32(bytes, at: 4))
        guard length == bytes.count - 8 else { throw DecodingError("compressed length \(length) but \(bytes.count - 8) bytes follow") }
        let inner = try inflate(bytes[8...])
        guard inner.count >= headerLength else { throw DecodingError("inflated to \(inner.count) bytes, less than the 40-byte header") }
        let innerCookie = readUInt32(inner, at: 0)
        guard innerCookie & ~0xf0 == encodingCookie & ~0xf0 else {
            throw DecodingError("inner cookie 0x\(String(innerCookie, radix: 16)) is not the V2 encoding's (0x1c849313)")
        }
        let payloadLength = Int(readUInt32(inner, at: 4))
        guard payloadLength == inner.count - headerLength else {
            throw DecodingError("payload length \(payloadLength) but \(inner.count - headerLength) bytes follow the header")
        }
        guard readUInt32(inner, at: 8) == 0 else { throw DecodingError("a normalizing index offset other than 0 is not supported") }
        let digits = Int(readUInt32(inner, at: 12))
        guard digits == layout.significantDigits else {
            throw DecodingError("\(digits) significant digits; expected \(layout.significantDigits)")
        }
        let lowest = readUInt64(inner, at: 16)
        guard lowest == 1 else { throw DecodingError("lowest discernible value \(lowest); expected 1") }

        var indexes: [Int32] = []
        var counts: [UInt64] = []
        var position = headerLength
        var index = 0
        while position < inner.count {
            let value = try readZigZag(inner, at: &position)
            if value < 0 {
                guard value > -Int64(layout.countsLength) else { throw DecodingError("a run of \(-value) zeros is longer than the layout") }
                index += Int(-value)
                continue
            }
            guard index < layout.countsLength else {
                throw DecodingError("a count at index \(index), past the highest trackable value \(layout.highestTrackableValue)")
            }
            if value > 0 {
                indexes.append(Int32(index))
                counts.append(UInt64(value))
            }
            index += 1
        }
        return SparseHistogram(ascendingIndexes: indexes, counts: counts)
    }

    /// Decodes base64 text of a compressed encoding.
    package static func decode(base64 text: String, layout: HistogramLayout = .latencyMicroseconds) throws(DecodingError) -> SparseHistogram {
        guard let data = Data(base64Encoded: text) else { throw DecodingError("not base64") }
        return try decode(data, layout: layout)
    }

    // MARK: Bytes

    private static func inflate(_ compressed: ArraySlice<UInt8>) throws(DecodingError) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DecodingError("zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: 4096)
        var produced = 0
        var status: Int32 = Z_OK
        var input = Array(compressed)
        input.withUnsafeMutableBufferPointer { source in
            stream.next_in = source.baseAddress
            stream.avail_in = uInt(source.count)
            while status == Z_OK {
                if produced == output.count {
                    guard output.count < maximumInflatedBytes else { break }
                    output += [UInt8](repeating: 0, count: output.count)
                }
                status = output.withUnsafeMutableBufferPointer { target in
                    stream.next_out = target.baseAddress! + produced
                    stream.avail_out = uInt(target.count - produced)
                    let result = CZlib.inflate(&stream, Z_NO_FLUSH)
                    produced = target.count - Int(stream.avail_out)
                    return result
                }
            }
        }
        guard status == Z_STREAM_END else {
            if produced == output.count { throw DecodingError("inflates to more than \(maximumInflatedBytes) bytes") }
            throw DecodingError("not a complete zlib stream (zlib status \(status))")
        }
        guard stream.avail_in == 0 else { throw DecodingError("bytes after the end of the zlib stream") }
        return Array(output[0..<produced])
    }

    private static func put(_ value: UInt32, into bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    private static func put(_ value: UInt64, into bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 << 8 | UInt32(bytes[offset + $1]) }
    }

    private static func readUInt64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 << 8 | UInt64(bytes[offset + $1]) }
    }

    /// HdrHistogram's ZigZag LEB128: 7 bits a byte, low first, for 8 bytes; a 9th byte carries 8 bits.
    static func putZigZag(_ value: Int64, into bytes: inout [UInt8]) {
        var rest = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        for _ in 0..<8 {
            if rest >> 7 == 0 {
                bytes.append(UInt8(rest))
                return
            }
            bytes.append(UInt8(truncatingIfNeeded: rest & 0x7f) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: rest))
    }

    static func readZigZag(_ bytes: [UInt8], at position: inout Int) throws(DecodingError) -> Int64 {
        var result: UInt64 = 0
        for byteNumber in 0..<9 {
            guard position < bytes.count else { throw DecodingError("the payload ends inside a number") }
            let byte = bytes[position]
            position += 1
            if byteNumber == 8 {
                result |= UInt64(byte) << 56
                break
            }
            result |= UInt64(byte & 0x7f) << UInt64(7 * byteNumber)
            if byte & 0x80 == 0 { break }
        }
        return Int64(bitPattern: result >> 1) ^ -Int64(bitPattern: result & 1)
    }
}
