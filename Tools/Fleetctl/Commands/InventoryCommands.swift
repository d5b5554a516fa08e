import ArgumentParser
import RegistryContract

/// `fleetctl sites [SITE_ID]`: every site, or one site with its servers and groups.
struct SitesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sites", abstract: "List the sites, or show one with its servers and device groups.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "A site id: show this site.")
    var siteID: String?

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            if let siteID {
                let page = try await registry.call { try await registry.registryAPI.getSitePage(path: .init(siteId: siteID)).ok.body.json }
                return try context.report(page, render: Self.render)
            }
            let sites = try await registry.call { try await registry.registryAPI.listSites().ok.body.json.items }
            return try context.report(sites, render: Self.render)
        }
    }

    static func render(_ sites: [RegistrySchema.Site]) -> String {
        var table = TextTable("id", "name", "online", "servers", "devices", numeric: [3, 4])
        for site in sites {
            table.add(site.id, site.name, Format.yesNo(site.online), String(site.serverCount), String(site.deviceCount))
        }
        return table.render() + "\n\(OperationReport.count(sites.count, "site"))"
    }

    static func render(_ page: RegistrySchema.SitePage) -> String {
        let site = page.site
        var sections = [
            "Site \(site.id) (\(site.name)): \(site.online ? "online" : "offline"), "
                + "\(OperationReport.count(site.serverCount, "server")), \(OperationReport.count(site.deviceCount, "device"))"
        ]
        var servers = TextTable("server", "name", "online", "agent", "pipelines", "last seen")
        for server in page.servers {
            servers.add(
                server.id, server.name, Format.yesNo(server.online), server.agentVersion, Format.yesNo(server.supportsPipelines),
                Format.date(server.lastSeen))
        }
        sections.append(servers.render())
        if !page.groups.isEmpty {
            var groups = TextTable("group", "name")
            for group in page.groups { groups.add(group.id, group.name) }
            sections.append(groups.render())
        }
        sections.append("Devices: fleetctl devices --site \(site.id)")
        return sections.joined(separator: "\n\n")
    }
}

/// `fleetctl devices`: the fleet's devices, every page, narrowed by the filters.
struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "devices", abstract: "List devices; every filter narrows the list.")

    /// Online or offline (the device's server, as the registry last heard).
    enum Presence: String, EnumerableFlag {
        case online, offline
    }

    /// Enabled or disabled by an operator.
    enum Enablement: String, EnumerableFlag {
        case enabled, disabled
    }

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only the devices of this site.")
    var site: String?

    @Option(help: "Only the devices of this server (agent id).")
    var server: String?

    @Option(help: "Only the devices of this group (UUID).")
    var group: String?

    @Option(name: .customLong("label"), help: "Only devices with this label; repeat to require several.")
    var labels: [String] = []

    @Flag(help: "Only online, or only offline, devices.")
    var presence: Presence?

    @Flag(help: "Only enabled, or only disabled, devices.")
    var enablement: Enablement?

    func run() async throws {
        var query: [(String, String)] = [("limit", "500")]
        if let site { query.append(("site", site)) }
        if let server { query.append(("server", server)) }
        if let group { query.append(("group", group)) }
        query += labels.map { ("label", $0) }
        if let presence { query.append(("online", presence == .online ? "true" : "false")) }
        if let enablement { query.append(("enabled", enablement == .enabled ? "true" : "false")) }
        try await global.run { context in
            try await context.printList(context.registry, "/v1/devices", query: query, as: RegistrySchema.Device.self, render: Self.render)
            return .success
        }
    }

    static func render(_ devices: [RegistrySchema.Device]) -> String {
        var table = TextTable("id", "name", "kind", "site", "server", "key", "state", "labels")
        for device in devices {
            let state = device.gone ? "gone" : (device.enabled ? "" : "disabled, ") + (device.reachable ? "online" : "offline")
            table.add(
                device.id, device.name, device.kind, device.siteId, device.serverId, device.key, state,
                Format.list(device.labels))
        }
        return table.render() + "\n\(OperationReport.count(devices.count, "device"))"
    }
}

/// `fleetctl models [MODEL_ID]`: the catalogue, or one model with its versions.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List the model catalogue, or show one model with its versions.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "A model id: show this model and its versions.")
    var modelID: IDArgument?

    @Option(help: "Only models for this task (object_detection, classification, …).")
    var task: RegistrySchema.ModelTask?

    @Option(help: "Only models with this label.")
    var label: String?

    @Option(help: "Only models whose name or description contains this text.")
    var search: String?

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            if let modelID {
                let model = try await registry.call { try await registry.registryAPI.getModel(path: .init(modelId: modelID.text)).ok.body.json }
                return try context.report(model, render: Self.render)
            }
            let models = try await registry.allPages("/v1/models") { cursor in
                let query = Operations.ListModels.Input.Query(task: task, label: label, q: search, limit: 200, cursor: cursor)
                let page = try await registry.registryAPI.listModels(query: query).ok.body.json
                return (page.items, page.nextCursor)
            }
            return try context.report(models, render: Self.render)
        }
    }

    static func render(_ models: [RegistrySchema.Model]) -> String {
        var table = TextTable("id", "name", "task", "format", "labels", "created")
        for model in models {
            table.add(model.id, model.name, model.task.rawValue, model.format.rawValue, Format.list(model.labels), Format.date(model.createdAt))
        }
        return table.render() + "\n\(OperationReport.count(models.count, "model"))"
    }

    static func render(_ model: RegistrySchema.Model) -> String {
        var sections = ["Model \(model.name) (\(model.id)): \(model.task.rawValue), \(model.format.rawValue), labels \(Format.list(model.labels))"]
        if !model.description.isEmpty { sections[0] += "\n\(model.description)" }
        var versions = TextTable("version", "status", "size", "created", "default settings", "artifact")
        for version in model.versions ?? [] {
            versions.add(
                version.version, version.status.rawValue, Format.bytes(version.sizeBytes), Format.date(version.createdAt),
                Format.settings(version.defaultSettings), version.artifactUri)
        }
        sections.append((model.versions ?? []).isEmpty ? "No versions." : versions.render())
        return sections.joined(separator: "\n\n")
    }
}
