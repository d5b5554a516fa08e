import Foundation

/// Shows on stderr how far an operation is while the tool waits for it: on a terminal a line
/// redrawn in place, otherwise a plain line now and then (logs of a CI job should not fill with
/// four lines a second).
struct ProgressDisplay {
    enum Style {
        /// Many devices: `[#####-----] 512/1000  applied 500  failed 2  pending 498  timed out 0`.
        case bar
        /// One device: its status as it moves (`pending`, `delivered`, …).
        case single
        /// Nothing (`--output json`).
        case silent
    }

    let style: Style
    let console: Console
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var lastLine = ""
    private var lastPrinted: ContinuousClock.Instant?

    /// Without a terminal, a changed line is printed at most this often, and an unchanged one
    /// this much less often, to show the tool is still waiting.
    private static let plainInterval = Duration.seconds(2)
    private static let plainRepeat = Duration.seconds(30)

    init(style: Style, console: Console) {
        self.style = style
        self.console = console
        start = clock.now
    }

    static func bar(_ operation: OperationSummary, width: Int = 20) -> String {
        let filled = operation.devices == 0 ? width : min(width, operation.settled * width / operation.devices)
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
            + "\(operation.settled)/\(operation.devices)  applied \(operation.applied)  failed \(operation.failed)  "
            + "pending \(operation.pending)  timed out \(operation.timedOut)"
    }

    mutating func update(_ detail: OperationDetail) {
        guard let line = line(for: detail) else { return }
        let now = clock.now
        if console.stderrIsTerminal {
            let elapsed = now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            // \r and "erase line" redraw the same line in place.
            console.write(toStandardError: "\r\u{1B}[2K\(line)  " + String(format: "%.1f s", seconds))
            lastLine = line
        } else {
            let due = lastPrinted.map { now - $0 >= (line == lastLine ? Self.plainRepeat : Self.plainInterval) } ?? true
            guard due else { return }
            console.error(line)
            lastPrinted = now
            lastLine = line
        }
    }

    /// Ends the display: the bar's line is closed, or the final state printed when it was not yet.
    mutating func finish(_ detail: OperationDetail) {
        guard let line = line(for: detail) else { return }
        if console.stderrIsTerminal {
            update(detail)
            console.write(toStandardError: "\n")
        } else if line != lastLine {
            console.error(line)
        }
    }

    private func line(for detail: OperationDetail) -> String? {
        switch style {
        case .silent:
            return nil
        case .bar:
            return Self.bar(detail.operation)
        case .single:
            let device = detail.devices.first
            let status = device?.status.rawValue.replacingOccurrences(of: "_", with: " ") ?? "waiting"
            return "\(device?.deviceName ?? "device"): \(status)"
        }
    }
}
