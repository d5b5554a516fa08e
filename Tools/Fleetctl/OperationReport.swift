/// The text an operator reads about an operation: its preview before, its summary after.
enum OperationReport {
    /// Rows shown of a long list in a table; `--output json` has them all.
    static let shownRows = 50

    /// A dry run's answer: each device's change, the devices skipped and why, offline sites.
    static func preview(_ preview: OperationPreview) -> String {
        var sections = [
            "Preview of \(preview.kind.rawValue): \(count(preview.changes.count, "device")) would change, \(preview.skipped.count) skipped."
        ]
        if !preview.changes.isEmpty {
            var table = TextTable("device", "site", "server", "change")
            table.maximumCellWidth = 80
            for change in preview.changes.prefix(shownRows) {
                table.add(change.deviceName, change.siteId, change.serverId, ChangeDescription.describe(before: change.before, after: change.after))
            }
            sections.append(table.render() + more(preview.changes.count))
        }
        if !preview.skipped.isEmpty {
            sections.append("Skipped:\n" + skippedTable(preview.skipped))
        }
        if !preview.offlineSites.isEmpty {
            sections.append("Offline sites (their devices get the change when their servers come back): \(Format.list(preview.offlineSites))")
        }
        let unreachable = preview.changes.filter { !$0.reachable }.count
        if unreachable > 0 {
            sections.append("\(count(unreachable, "device")) not reachable now: their watchdog starts when their server comes back.")
        }
        return sections.joined(separator: "\n\n")
    }

    /// An operation's counts and the devices that did not apply (all its devices with `all`).
    static func summary(_ detail: OperationDetail, skipped: [SkippedDevice] = [], all: Bool = false) -> String {
        let operation = detail.operation
        let state = operation.finished ? "finished" : "in progress"
        var sections = ["Operation \(operation.id) (\(operation.kind.rawValue)): \(state)"]
        var counts = TextTable("status", "devices", numeric: [1])
        counts.add("applied", String(operation.applied))
        counts.add("failed", String(operation.failed))
        counts.add("timed out", String(operation.timedOut))
        counts.add("pending", String(operation.pending))
        counts.add("total", String(operation.devices))
        if !skipped.isEmpty { counts.add("skipped", String(skipped.count)) }
        sections.append(counts.render())

        let listed = all ? detail.devices : detail.devices.filter { $0.status != .applied }
        if !listed.isEmpty {
            var table = TextTable("device", "site", "server", "status", "reason")
            table.maximumCellWidth = 100
            let ordered = listed.sorted { rank($0.status) < rank($1.status) }
            for device in (all ? ordered : Array(ordered.prefix(shownRows))) {
                table.add(
                    device.deviceName, device.siteId, device.serverId, device.status.rawValue.replacingOccurrences(of: "_", with: " "), device.note)
            }
            let title = all ? "Devices:" : (operation.finished ? "Failed and timed-out devices:" : "Devices not applied yet:")
            sections.append(title + "\n" + table.render() + (all ? "" : more(listed.count)))
        }
        if !skipped.isEmpty {
            sections.append("Skipped:\n" + skippedTable(skipped))
        }
        return sections.joined(separator: "\n\n")
    }

    /// One line for an operation on one device.
    static func singleLine(_ detail: OperationDetail) -> String {
        guard let device = detail.devices.first else {
            return "Operation \(detail.operation.id) (\(detail.operation.kind.rawValue)) has no device"
        }
        let status = device.status.rawValue.replacingOccurrences(of: "_", with: " ")
        let reason = device.reason.map { ": \($0)" } ?? ""
        return "\(detail.operation.kind.rawValue) on \(device.deviceName) (server \(device.serverId), site \(device.siteId)): \(status)\(reason)"
            + "\noperation \(detail.operation.id)"
    }

    private static func skippedTable(_ skipped: [SkippedDevice]) -> String {
        var table = TextTable("device", "id", "reason")
        table.maximumCellWidth = 100
        for device in skipped.prefix(shownRows) {
            table.add(device.deviceName ?? "-", device.deviceId, device.reason)
        }
        return table.render() + more(skipped.count)
    }

    /// Failures first: they are what the operator has to act on.
    private static func rank(_ status: OrchestratorSchema.DeviceStatus) -> Int {
        switch status {
        case .failed: 0
        case .timedOut: 1
        case .pending: 2
        case .delivered: 3
        case .applied: 4
        }
    }

    private static func more(_ total: Int) -> String {
        total > shownRows ? "\n… and \(total - shownRows) more (--output json lists them all)" : ""
    }

    static func count(_ number: Int, _ noun: String) -> String {
        "\(number) \(noun)\(number == 1 ? "" : "s")"
    }
}
