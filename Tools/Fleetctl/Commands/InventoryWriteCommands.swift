import ArgumentParser
import FleetContract
import Foundation
import RegistryContract

/// What a device is after an operator's change, in one line.
enum DeviceReport {
    static func line(_ device: RegistrySchema.Device) -> String {
        let group = device.groupId.map { "group \($0)" } ?? "no group"
        return "device \(device.name) (\(device.id)), site \(device.siteId): "
            + "\(device.enabled ? "enabled" : "disabled"), \(group), labels \(Format.list(device.labels))"
    }

    /// Sends `change` as the device's PATCH and prints the device after it, after `verb`.
    static func update(_ device: IDArgument, _ change: [String: JSONValue], verb: String, context: CommandContext) async throws -> ExitCode {
        try await context.write(.PATCH, "/v1/devices/\(device.text)", body: .object(change), as: RegistrySchema.Device.self) {
            "\(verb) \(line($0))"
        }
    }
}

/// `fleetctl rename-device DEVICE_ID NAME`.
struct RenameDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename-device", abstract: "Give a device a new display name.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Argument(help: "The new name (1 to 128 characters).")
    var name: String

    func run() async throws {
        try await global.run { context in
            try await DeviceReport.update(device, ["name": .string(name)], verb: "Renamed", context: context)
        }
    }
}

/// `fleetctl enable-device DEVICE_ID`.
struct EnableDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable-device", abstract: "Put a device back in service: operations on many devices take it again.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    func run() async throws {
        try await global.run { context in
            try await DeviceReport.update(device, ["enabled": .bool(true)], verb: "Enabled", context: context)
        }
    }
}

/// `fleetctl disable-device DEVICE_ID`.
struct DisableDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disable-device",
        abstract: "Take a device out of service: operations skip it and it takes no new pipelines; what it runs is left as it is.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    func run() async throws {
        try await global.run { context in
            try await DeviceReport.update(device, ["enabled": .bool(false)], verb: "Disabled", context: context)
        }
    }
}

/// `fleetctl group-device DEVICE_ID GROUP_ID` or `--none`.
struct GroupDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group-device", abstract: "Put a device in a device group of its site, or take it out of its group (--none).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @Argument(help: "The group's id (see `fleetctl sites SITE_ID`).")
    var group: IDArgument?

    @Flag(help: "Take the device out of its group.")
    var none = false

    func validate() throws {
        guard (group == nil) != !none else { throw ValidationError("give either a GROUP_ID or --none") }
    }

    func run() async throws {
        try await global.run { context in
            let change: JSONValue = group.map { .string($0.text) } ?? .null
            return try await DeviceReport.update(device, ["group_id": change], verb: group == nil ? "Ungrouped" : "Grouped", context: context)
        }
    }
}

/// `fleetctl label-device DEVICE_ID --add L --remove L`.
struct LabelDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "label-device", abstract: "Add labels to a device or remove them.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The device's id.")
    var device: IDArgument

    @OptionGroup var edits: LabelEdits

    func run() async throws {
        try await global.run { context in
            let current = try await context.registry.get("/v1/devices/\(device.text)", as: RegistrySchema.Device.self)
            let labels = JSONValue.array(edits.applied(to: current.labels).map(JSONValue.string))
            return try await DeviceReport.update(device, ["labels": labels], verb: "Labelled", context: context)
        }
    }
}

/// `fleetctl create-site SITE_ID --name NAME`: a site before its agents say hello.
struct CreateSiteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-site", abstract: "Add a site (agents also add theirs when they first say hello).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The site's id: 1 to 128 letters, digits, '-', '_' and '.'.")
    var site: String

    @Option(help: "The site's display name.")
    var name: String

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            let created = try await registry.call {
                try await registry.registryAPI.createSite(body: .json(RegistrySchema.NewSite(id: site, name: name))).created.body.json
            }
            return try context.report(created) { "Created site \($0.id) (\($0.name))." }
        }
    }
}

/// `fleetctl create-group --site SITE_ID --name NAME`.
struct CreateGroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create-group", abstract: "Add a device group to a site.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The site's id.")
    var site: String

    @Option(help: "The group's name, unique in the site.")
    var name: String

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            let created = try await registry.call {
                try await registry.registryAPI.createDeviceGroup(path: .init(siteId: site), body: .json(RegistrySchema.NewDeviceGroup(name: name)))
                    .created.body.json
            }
            return try context.report(created) { group in
                "Created group \(group.name) (\(group.id)) in site \(group.siteId).\nPut a device in it: fleetctl group-device DEVICE_ID \(group.id)"
            }
        }
    }
}

/// `fleetctl delete-group GROUP_ID --site SITE_ID [--yes]`.
struct DeleteGroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-group", abstract: "Delete a device group; its devices leave it.",
        discussion: "Without --yes you are asked to confirm; with no terminal to ask, nothing is deleted (exit 3).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The group's id.")
    var group: IDArgument

    @Option(help: "The group's site.")
    var site: String

    @OptionGroup var options: DeletionOptions

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            // Read first: the question names the group, and a wrong id fails before it is asked.
            let groups = try await registry.call { try await registry.registryAPI.listDeviceGroups(path: .init(siteId: site)).ok.body.json.items }
            guard let current = groups.first(where: { UUID(uuidString: $0.id) == group.id }) else {
                throw FleetctlError.invalidInput("site \(site) has no group \(group.text)")
            }
            return try await context.delete(
                what: "group \(current.name) (\(group.text)) of site \(site)", identity: ["site_id": .string(site), "group_id": .string(group.text)],
                options: options
            ) {
                _ = try await registry.call {
                    try await registry.registryAPI.deleteDeviceGroup(path: .init(siteId: site, groupId: group.text)).noContent
                }
            }
        }
    }
}
