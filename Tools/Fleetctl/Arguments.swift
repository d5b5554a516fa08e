import ArgumentParser
import FleetContract
import Foundation

/// A `key=value` setting from the command line. The value is JSON when it parses as JSON
/// (`0.5`, `true`, `[1,2]`, `"0.5"`), else the text as a string (`mode=fast`).
struct SettingArgument: ExpressibleByArgument, Sendable {
    var key: String
    var value: JSONValue

    init?(argument: String) {
        guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else { return nil }
        key = String(argument[..<equals])
        let text = String(argument[argument.index(after: equals)...])
        value = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text)
    }

    static var defaultValueDescription: String { "key=value" }

    /// The settings as one JSON object; a key given twice is a usage error.
    static func object(_ settings: [SettingArgument]) throws -> [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        for setting in settings {
            guard object.updateValue(setting.value, forKey: setting.key) == nil else {
                throw ValidationError("the setting '\(setting.key)' is given twice")
            }
        }
        return object
    }
}

/// Which devices an operation on many devices takes, as the orchestrator's `targets`: kinds of
/// selector narrow each other (a site and a label: that site's devices with that label); devices
/// named by id are added to the selection.
struct DeviceSelectors: ParsableArguments {
    @Option(name: .customLong("site"), help: "A site id; repeat for several sites.")
    var sites: [String] = []

    @Option(name: .customLong("group"), help: "A device group id (UUID); repeat for several groups.")
    var groups: [String] = []

    @Option(name: .customLong("label"), help: "A device label; repeat for several labels.")
    var labels: [String] = []

    @Option(name: .customLong("device"), help: "A device id (UUID); repeat for several devices.")
    var devices: [String] = []

    func validate() throws {
        guard !(sites.isEmpty && groups.isEmpty && labels.isEmpty && devices.isEmpty) else {
            throw ValidationError("choose devices with --site, --group, --label and/or --device")
        }
        for id in groups + devices where UUID(uuidString: id) == nil {
            throw ValidationError("'\(id)' is not a UUID")
        }
    }

    /// The `targets` object of the request body.
    var targets: JSONValue {
        var object: [String: JSONValue] = [:]
        if !sites.isEmpty { object["site_ids"] = .array(sites.map(JSONValue.string)) }
        if !groups.isEmpty { object["group_ids"] = .array(groups.map(JSONValue.string)) }
        if !labels.isEmpty { object["labels"] = .array(labels.map(JSONValue.string)) }
        if !devices.isEmpty { object["device_ids"] = .array(devices.map(JSONValue.string)) }
        return .object(object)
    }
}

/// How an operation on many devices is carried out: previewed and confirmed, or applied at once.
struct BulkOptions: ParsableArguments {
    @Flag(help: "Preview only: print what would change and change nothing.")
    var dryRun = false

    @Flag(name: [.customShort("y"), .long], help: "Apply without the preview and the question.")
    var yes = false

    @Flag(help: "Accept devices of offline sites: they get their pipelines when their servers come back.")
    var allowOffline = false

    @Option(name: .customLong("watchdog"), help: "Seconds a device has to apply once its server is online (1-86400; default 120).")
    var watchdogSeconds: Int?

    @Flag(help: "Do not wait for the devices: print the operation and exit.")
    var noWait = false

    func validate() throws {
        if let watchdogSeconds, !(1...86_400).contains(watchdogSeconds) {
            throw ValidationError("--watchdog takes 1 to 86400 seconds")
        }
    }

    /// The options' fields of a request body (`allow_offline`, `watchdog_seconds`).
    var fields: [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        if allowOffline { object["allow_offline"] = .bool(true) }
        if let watchdogSeconds { object["watchdog_seconds"] = .number(Double(watchdogSeconds)) }
        return object
    }
}

/// How an operation on one device is carried out; no confirmation is needed.
struct SingleDeviceOptions: ParsableArguments {
    @Flag(help: "Preview only: print what would change and change nothing.")
    var dryRun = false

    @Flag(help: "Accept a device of an offline site: it gets its pipelines when its server comes back.")
    var allowOffline = false

    @Option(name: .customLong("watchdog"), help: "Seconds the device has to apply once its server is online (1-86400; default 120).")
    var watchdogSeconds: Int?

    @Flag(help: "Do not wait for the device: print the operation and exit.")
    var noWait = false

    func validate() throws {
        if let watchdogSeconds, !(1...86_400).contains(watchdogSeconds) {
            throw ValidationError("--watchdog takes 1 to 86400 seconds")
        }
    }

    /// The options' fields of a request body.
    var fields: [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        if dryRun { object["dry_run"] = .bool(true) }
        if allowOffline { object["allow_offline"] = .bool(true) }
        if let watchdogSeconds { object["watchdog_seconds"] = .number(Double(watchdogSeconds)) }
        return object
    }
}

/// A UUID argument, checked before any request is made.
struct IDArgument: ExpressibleByArgument, Sendable {
    var id: UUID

    init?(argument: String) {
        guard let id = UUID(uuidString: argument) else { return nil }
        self.id = id
    }

    /// The id as the services write it.
    var text: String { id.uuidString.lowercased() }

    static var defaultValueDescription: String { "UUID" }
}

/// A JSON value given on the command line (`--inputs '{"image": [640, 640, 3]}'`), checked before
/// any request is made.
struct JSONArgument: ExpressibleByArgument, Sendable {
    var value: JSONValue

    init?(argument: String) {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(argument.utf8)) else { return nil }
        self.value = value
    }

    static var defaultValueDescription: String { "JSON" }
}
