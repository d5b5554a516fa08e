// Every line of ModelFleet that touches libmosquitto is in this file. The rest of the MQTT module
// sees `Mosquitto` (a handle with Swift-typed methods) and `MosquittoEvents` (callbacks with
// values already copied into Swift). Each unsafe operation carries a comment saying why it is safe.

import CMosquitto
import Foundation

/// Receives libmosquitto's callbacks, on the network thread, with everything copied into Swift values.
protocol MosquittoEvents: AnyObject, Sendable {
    func mosquittoDidConnect(reasonCode: Int32, sessionPresent: Bool)
    func mosquittoDidDisconnect(reasonCode: Int32)
    func mosquittoDidPublish(messageID: Int32, reasonCode: Int32)
    func mosquittoDidSubscribe(messageID: Int32, grantedQoS: [Int32])
    func mosquittoDidReceive(_ message: MQTTMessage, subscriptionIDs: SubscriptionIDs)
}

/// The subscription identifiers a received message carries: one for each of the client's
/// subscriptions it matched. Nearly always one, held inline: an array would cost an allocation
/// per message on the network thread.
struct SubscriptionIDs: Sendable {
    var first: UInt32?
    var others: [UInt32] = []

    mutating func append(_ id: UInt32) {
        if first == nil { first = id } else { others.append(id) }
    }
}

/// libmosquitto must be initialised once per process before the first client is made. A `static let`
/// is initialised exactly once, thread-safely, so this is the one piece of process-wide state and it
/// is immutable.
private enum LibraryInitialisation {
    static let done: Void = { _ = mosquitto_lib_init() }()
}

/// One libmosquitto client (`struct mosquitto *`).
///
/// Thread safety: libmosquitto is built thread-safe; with `mosquitto_threaded_set(true)` one thread
/// (ours, in `MQTTClient`) runs `loop`, while publish, subscribe, unsubscribe and disconnect may be
/// called from any thread: they take libmosquitto's internal mutexes and wake the loop through its
/// socket pair. Configuration calls (will, credentials, TLS) happen before the loop thread starts.
/// That is why this class can be `@unchecked Sendable`.
final class Mosquitto: @unchecked Sendable {
    private let handle: OpaquePointer

    init(clientID: String, cleanStart: Bool) throws(MQTTError) {
        _ = LibraryInitialisation.done
        guard let handle = mosquitto_new(clientID, cleanStart, nil) else {
            throw .library(operation: "mosquitto_new", code: cmosquitto_errno(), message: String(cString: strerror(cmosquitto_errno())))
        }
        self.handle = handle
        _ = mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5)
        _ = mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
        _ = mosquitto_threaded_set(handle, true)

        // The callbacks are C function pointers and capture nothing; they find their target through
        // the user-data pointer set above, which is valid while this handle lives (see init's comment).
        mosquitto_connect_v5_callback_set(handle) { _, context, reasonCode, flags, _ in
            Mosquitto.events(context).mosquittoDidConnect(reasonCode: reasonCode, sessionPresent: flags & 1 != 0)
        }
        mosquitto_disconnect_v5_callback_set(handle) { _, context, reasonCode, _ in
            Mosquitto.events(context).mosquittoDidDisconnect(reasonCode: reasonCode)
        }
        mosquitto_publish_v5_callback_set(handle) { _, context, messageID, reasonCode, _ in
            Mosquitto.events(context).mosquittoDidPublish(messageID: messageID, reasonCode: reasonCode)
        }
        mosquitto_subscribe_v5_callback_set(handle) { _, context, messageID, count, granted, _ in
            // `granted` points at `count` ints owned by libmosquitto for the duration of the callback.
            let qos = granted.map { Array(UnsafeBufferPointer(start: $0, count: Int(count))) } ?? []
            Mosquitto.events(context).mosquittoDidSubscribe(messageID: messageID, grantedQoS: qos)
        }
        mosquitto_message_v5_callback_set(handle) { _, context, message, properties in
            // The message and its properties are freed when this callback returns: copy them now.
            guard let message else { return }
            let copy = Mosquitto.copy(message.pointee, properties: properties)
            Mosquitto.events(context).mosquittoDidReceive(copy.message, subscriptionIDs: copy.subscriptionIDs)
        }
    }

    deinit {
        mosquitto_destroy(handle)
    }

    /// Sets where callbacks go; call once, before `connect`.
    ///
    /// `events` is held unretained: it is the owner of this handle (`MQTTClient.Core`), so it
    /// outlives it, and callbacks only run inside `connect` and `loop`, which only the owner calls.
    func setEvents(_ events: some MosquittoEvents) {
        let target = EventsTarget(events)
        self.target = target
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(target).toOpaque())
    }

    /// The user-data pointer's object: the callbacks' target as an existential already, so that
    /// a callback (one per received message) costs no dynamic cast.
    private final class EventsTarget {
        unowned(unsafe) let events: any MosquittoEvents
        init(_ events: any MosquittoEvents) { self.events = events }
    }

    /// Set once by `setEvents`, before the loop runs; keeps the user-data object alive.
    private var target: EventsTarget?

    private static func events(_ context: UnsafeMutableRawPointer?) -> any MosquittoEvents {
        // `context` is the pointer `setEvents` made from `target`, which this handle keeps alive;
        // the events object it names outlives the handle (see `setEvents`).
        Unmanaged<EventsTarget>.fromOpaque(context!).takeUnretainedValue().events
    }

    // MARK: Configuration (before the loop starts)

    func setCredentials(username: String?, password: String?) throws(MQTTError) {
        let code = mosquitto_username_pw_set(handle, username, password)
        try check(code, errno: cmosquitto_errno(), "mosquitto_username_pw_set")
    }

    func setTLS(_ tls: MQTTConfiguration.TLS) throws(MQTTError) {
        // Without a CA file, trust the system's certificate store.
        let caPath: String? = tls.caFile == nil ? "/etc/ssl/certs" : nil
        let code = mosquitto_tls_set(handle, tls.caFile, caPath, tls.certificateFile, tls.keyFile, nil)
        try check(code, errno: cmosquitto_errno(), "mosquitto_tls_set")
    }

    func setWill(_ will: MQTTOutgoingMessage) throws(MQTTError) {
        var list = try PropertyList(will.properties)
        let code = will.payload.withUnsafeBytes { bytes in
            mosquitto_will_set_v5(handle, will.topic, Int32(bytes.count), bytes.baseAddress, will.qos.rawValue, will.retain, list.pointer)
        }
        // On success libmosquitto owns the list; on failure it is still ours to free.
        let error = cmosquitto_errno()
        if code == MOSQ_ERR_SUCCESS.rawValue { list.release() }
        try check(code, errno: error, "mosquitto_will_set_v5")
    }

    // MARK: Connection (network thread)

    /// Opens the TCP (and TLS) connection and sends CONNECT; CONNACK arrives later through `loop`.
    func connect(host: String, port: Int, keepAlive: Duration, sessionExpiry: Duration?) throws(MQTTError) {
        var list = PropertyList()
        if let sessionExpiry {
            let seconds = UInt32(clamping: sessionExpiry.components.seconds)
            _ = mosquitto_property_add_int32(&list.pointer, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), seconds)
        }
        let code = mosquitto_connect_bind_v5(handle, host, Int32(port), Int32(keepAlive.components.seconds), nil, list.pointer)
        try check(code, errno: cmosquitto_errno(), "connect to \(host):\(port)")
    }

    /// libmosquitto's result code, with `errno` read right after the call (before any other code
    /// could overwrite it), for `MOSQ_ERR_ERRNO`.
    struct Outcome: Sendable {
        var code: Int32
        var errno: Int32

        var succeeded: Bool { code == MOSQ_ERR_SUCCESS.rawValue }
        var description: String { Mosquitto.describe(code, errno: errno) }
    }

    /// Runs one round of network work (read, write, keep-alive), waiting at most `timeout` for the socket.
    /// Fails when the connection is gone.
    func loop(timeout: Duration) -> Outcome {
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let code = mosquitto_loop(handle, milliseconds, 1)
        return Outcome(code: code, errno: cmosquitto_errno())
    }

    /// Reads the packets already waiting on the socket, at most `maximumPackets`, without waiting:
    /// one `mosquitto_loop` reads a single QoS 0 packet after its own `pselect`, so a busy
    /// subscriber would spend a `pselect` per message. `delivered` is a count the message
    /// callback raises. Reading stops at the first read that delivers no message: the socket is
    /// drained (one read that finds nothing), or holds a packet not yet complete (the next `loop`
    /// finishes it), or the packet was an acknowledgement or a response. It also stops as soon as
    /// something is waiting to be written (the PUBACK of a QoS 1 message, a publish): the broker
    /// sends a QoS 1 subscriber only so many unacknowledged messages, so acknowledgements must not
    /// wait behind reads. Asking the socket how much is waiting before each read cost a system
    /// call per message. Fails when the connection is gone.
    func readWaiting(maximumPackets: Int, delivered: () -> Int) -> Outcome {
        var packets = 0
        while packets < maximumPackets && !mosquitto_want_write(handle) {
            let before = delivered()
            let code = mosquitto_loop_read(handle, 1)
            guard code == MOSQ_ERR_SUCCESS.rawValue else { return Outcome(code: code, errno: cmosquitto_errno()) }
            packets += 1
            guard delivered() != before else { break }
        }
        return Outcome(code: MOSQ_ERR_SUCCESS.rawValue, errno: 0)
    }

    /// Publishes the farewell (if any), sends DISCONNECT with reason 0 (so that the broker
    /// discards the last will) and shuts the socket for writing only. The caller goes on running
    /// `loop` until the broker closes the connection, which ends it. Call it on the network
    /// thread only, between loop rounds. Returns false if the DISCONNECT could not be written; the
    /// caller then falls back on ``disconnect()``.
    ///
    /// Not `mosquitto_disconnect`, which closes the socket as soon as DISCONNECT is written:
    /// mosquitto 2.0 writes to a client before it reads from it, so a message routed to the
    /// client after that close fails to be written, and the broker drops the connection as lost,
    /// publishing the will, with the farewell and DISCONNECT unread in its socket (a raw-socket
    /// client closing like that under a flood got its will in 12 to 21 stops of 200). A client
    /// that stops writing but reads until the broker closes (TCP's orderly release) leaves it
    /// nothing to fail on. libmosquitto has no call for that, so the DISCONNECT is written here,
    /// after its queue is flushed: two bytes, type 0xE0 and remaining length 0, which MQTT 5 reads
    /// as reason 0 without properties. Only this thread writes to the socket (other threads'
    /// publishes are queued in threaded mode), so nothing can come between the flush and it; a
    /// publish queued after it fails on the closed write side and ends the loop.
    ///
    /// The farewell goes at QoS 0 whatever its configured QoS: a QoS 1 farewell would have the
    /// broker write a PUBACK to a client on its way out, the same race again (seen with mosquitto
    /// 2.0 on most of a thousand agents stopping together). The broker reads the PUBLISH before the
    /// DISCONNECT on the same connection, so the retained farewell is stored all the same.
    func sayGoodbye(farewell: MQTTOutgoingMessage?) -> Bool {
        if let farewell {
            _ = try? publish(
                topic: farewell.topic, payload: farewell.payload, qos: .atMostOnce, retain: farewell.retain, properties: farewell.properties)
        }
        // Flush libmosquitto's queue, the farewell last; a full socket buffer gets a second.
        let deadline = ContinuousClock.now + .seconds(1)
        while mosquitto_want_write(handle) {
            guard mosquitto_loop_write(handle, 1) == MOSQ_ERR_SUCCESS.rawValue, ContinuousClock.now < deadline else { return false }
            if mosquitto_want_write(handle) { Thread.sleep(forTimeInterval: 0.001) }
        }
        let socket = mosquitto_socket(handle)
        guard socket >= 0 else { return false }
        let disconnect: [UInt8] = [0xE0, 0x00]
        let written = disconnect.withUnsafeBytes { write(socket, $0.baseAddress, $0.count) }
        guard written == disconnect.count else { return false }
        _ = shutdown(socket, Int32(SHUT_WR))
        return true
    }

    /// Sends DISCONNECT through libmosquitto, which closes the socket right after writing it: for a
    /// connection not yet acknowledged (no will to discard yet), or when ``sayGoodbye(farewell:)``
    /// could not write. Network thread only, between loop rounds.
    func disconnect() {
        _ = mosquitto_threaded_set(handle, false)
        _ = mosquitto_disconnect_v5(handle, 0, nil)
    }

    /// Bytes already waiting on the socket, so that the receive path can keep batching while more
    /// messages are on their way; 0 when drained or not connected.
    var bytesWaiting: Int {
        let socket = mosquitto_socket(handle)
        guard socket >= 0 else { return 0 }
        return Int(max(cmosquitto_bytes_available(socket), 0))
    }

    // MARK: Operations (any thread)

    /// Queues a publish and returns its message id.
    func publish(topic: String, payload: Data, qos: MQTTQoS, retain: Bool, properties: MQTTProperties) throws(MQTTError) -> Int32 {
        let list = try PropertyList(properties)
        var messageID: Int32 = 0
        let code = payload.withUnsafeBytes { bytes in
            mosquitto_publish_v5(handle, &messageID, topic, Int32(bytes.count), bytes.baseAddress, qos.rawValue, retain, list.pointer)
        }
        try check(code, errno: cmosquitto_errno(), "publish to \(topic)")
        return messageID
    }

    /// Sends SUBSCRIBE with an MQTT 5 subscription identifier, so that received messages say which
    /// subscriptions they matched.
    func subscribe(filter: String, qos: MQTTQoS, subscriptionID: UInt32) throws(MQTTError) -> Int32 {
        var list = PropertyList()
        _ = mosquitto_property_add_varint(&list.pointer, Int32(MQTT_PROP_SUBSCRIPTION_IDENTIFIER.rawValue), subscriptionID)
        var messageID: Int32 = 0
        let code = mosquitto_subscribe_v5(handle, &messageID, filter, qos.rawValue, 0, list.pointer)
        try check(code, errno: cmosquitto_errno(), "subscribe to \(filter)")
        return messageID
    }

    func unsubscribe(filter: String) throws(MQTTError) {
        var messageID: Int32 = 0
        let code = mosquitto_unsubscribe_v5(handle, &messageID, filter, nil)
        try check(code, errno: cmosquitto_errno(), "unsubscribe from \(filter)")
    }

    // MARK: Helpers

    /// Names the calling thread for `top -H` and profilers (the kernel keeps 15 bytes). Set as
    /// `Thread.name`, the network thread's name (the client id, longer than that) never reached the
    /// kernel, and the thread showed its creator's, a Dispatch worker's.
    static func nameCurrentThread(_ name: String) {
        cmosquitto_name_thread(name)
    }

    static func describe(_ code: Int32, errno: Int32) -> String {
        if code == MOSQ_ERR_ERRNO.rawValue {
            return errno == 0 ? "system error" : String(cString: strerror(errno))
        }
        return String(cString: mosquitto_strerror(code))
    }

    static func describeReason(_ code: Int32) -> String {
        String(cString: mosquitto_reason_string(code))
    }

    static func topicMatches(filter: String, topic: String) -> Bool {
        var result = false
        return mosquitto_topic_matches_sub(filter, topic, &result) == MOSQ_ERR_SUCCESS.rawValue && result
    }

    /// `errno` must be read by the caller right after the call that returned `code`.
    private func check(_ code: Int32, errno: Int32, _ operation: @autoclosure () -> String) throws(MQTTError) {
        guard code == MOSQ_ERR_SUCCESS.rawValue else {
            if code == MOSQ_ERR_NO_CONN.rawValue { throw .notConnected }
            throw .library(operation: operation(), code: code, message: Mosquitto.describe(code, errno: errno))
        }
    }

    private static let jsonContentType = "application/json"

    /// Copies a received message and its properties into Swift values.
    private static func copy(_ message: mosquitto_message, properties: OpaquePointer?) -> (message: MQTTMessage, subscriptionIDs: SubscriptionIDs) {
        let topic = String(cString: message.topic)
        // payload is valid for payloadlen bytes during the callback; Data copies it.
        let payload = message.payloadlen > 0 ? Data(bytes: message.payload, count: Int(message.payloadlen)) : Data()
        var result = MQTTMessage(topic: topic, payload: payload, qos: MQTTQoS(rawValue: message.qos) ?? .atMostOnce, retain: message.retain)
        var subscriptionIDs = SubscriptionIDs()
        guard let properties else { return (result, subscriptionIDs) }

        // Each read_* call allocates the returned string or binary with malloc; we free it after copying.
        var text: UnsafeMutablePointer<CChar>?
        if mosquitto_property_read_string(properties, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), &text, false) != nil, let text {
            // Every message between the services and the agents is JSON: that one is not copied again.
            result.properties.contentType = strcmp(text, jsonContentType) == 0 ? jsonContentType : String(cString: text)
            free(text)
        }
        text = nil
        if mosquitto_property_read_string(properties, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), &text, false) != nil, let text {
            result.properties.responseTopic = String(cString: text)
            free(text)
        }
        var binary: UnsafeMutableRawPointer?
        var length: UInt16 = 0
        if mosquitto_property_read_binary(properties, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), &binary, &length, false) != nil {
            result.properties.correlationData = binary.map { Data(bytes: $0, count: Int(length)) } ?? Data()
            free(binary)
        }
        var expiry: UInt32 = 0
        if mosquitto_property_read_int32(properties, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), &expiry, false) != nil {
            result.properties.messageExpiryInterval = expiry
        }
        // Repeating properties are walked by passing the last one found back with skip_first.
        var cursor: OpaquePointer? = properties
        var skipFirst = false
        while true {
            var id: UInt32 = 0
            guard let found = mosquitto_property_read_varint(cursor, Int32(MQTT_PROP_SUBSCRIPTION_IDENTIFIER.rawValue), &id, skipFirst) else { break }
            subscriptionIDs.append(id)
            cursor = found
            skipFirst = true
        }
        cursor = properties
        skipFirst = false
        while true {
            var name: UnsafeMutablePointer<CChar>?
            var value: UnsafeMutablePointer<CChar>?
            guard let found = mosquitto_property_read_string_pair(cursor, Int32(MQTT_PROP_USER_PROPERTY.rawValue), &name, &value, skipFirst) else {
                break
            }
            if let name, let value { result.properties.userProperties.append(MQTTUserProperty(String(cString: name), String(cString: value))) }
            free(name)
            free(value)
            cursor = found
            skipFirst = true
        }
        return (result, subscriptionIDs)
    }
}

/// An owned `mosquitto_property` list, freed when it goes out of scope unless released to libmosquitto.
private struct PropertyList: ~Copyable {
    var pointer: OpaquePointer?

    init() { pointer = nil }

    init(_ properties: MQTTProperties) throws(MQTTError) {
        pointer = nil
        guard !properties.isEmpty else { return }
        // Each add_* copies its arguments into the list, so the Swift strings need only live for the call.
        var code: Int32 = 0
        if let contentType = properties.contentType {
            code |= mosquitto_property_add_string(&pointer, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), MQTTString.encodable(contentType))
        }
        if let expiry = properties.messageExpiryInterval {
            code |= mosquitto_property_add_int32(&pointer, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), expiry)
        }
        if let responseTopic = properties.responseTopic {
            code |= mosquitto_property_add_string(&pointer, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), responseTopic)
        }
        if let correlation = properties.correlationData {
            guard correlation.count <= Int(UInt16.max) else { throw .invalidArgument("correlation data is longer than 65535 bytes") }
            code |= correlation.withUnsafeBytes { bytes in
                mosquitto_property_add_binary(&pointer, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), bytes.baseAddress, UInt16(bytes.count))
            }
        }
        for property in properties.userProperties {
            // Escaped: a property's text may come from a client (MQTTString says why).
            code |= mosquitto_property_add_string_pair(
                &pointer, Int32(MQTT_PROP_USER_PROPERTY.rawValue), MQTTString.encodable(property.name), MQTTString.encodable(property.value))
        }
        if code != 0 {
            throw .invalidArgument("MQTT 5 properties could not be encoded (libmosquitto error \(code))")
        }
    }

    mutating func release() { pointer = nil }

    deinit {
        // add_* allocated the list; nothing else holds it unless `release` handed it over.
        var list = pointer
        if list != nil { mosquitto_property_free_all(&list) }
    }
}
