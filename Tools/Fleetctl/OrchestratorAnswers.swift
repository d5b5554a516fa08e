import FleetContract
import Foundation
import OrchestratorContract

// The orchestrator's answers as the tool reads them: its contract's generated types
// (Shared/Contracts/OrchestratorContract), named here as the commands speak of them.

/// The orchestrator's schemas, generated from its contract.
typealias OrchestratorSchema = OrchestratorContract.Components.Schemas
typealias OperationSummary = OrchestratorSchema.OperationSummary
typealias OperationDetail = OrchestratorSchema.OperationDetail
typealias OperationDevice = OrchestratorSchema.OperationDevice
typealias OperationPreview = OrchestratorSchema.Preview
typealias AcceptedOperation = OrchestratorSchema.Accepted
typealias SkippedDevice = OrchestratorSchema.SkippedDevice
typealias PipelineView = OrchestratorSchema.Pipeline
typealias StageView = OrchestratorSchema.Stage
typealias PipelineRevision = OrchestratorSchema.HistoryEntry

extension OperationSummary {
    var applied: Int { counts.applied }
    var failed: Int { counts.failed }
    var timedOut: Int { counts.timedOut }
    /// Not settled yet: waiting for delivery or for the agent's report.
    var pending: Int { counts.pending + counts.delivered }
    var settled: Int { applied + failed + timedOut }
}

extension OperationDevice {
    /// Why it failed, or how far its download is.
    var note: String {
        if let reason { return reason }
        guard let progress else { return "" }
        return "downloading \(Format.bytes(progress.bytesFetched))" + (progress.bytesTotal.map { " of \(Format.bytes($0))" } ?? "")
    }
}

extension StageView {
    /// The stage's settings as their JSON, for comparing and printing.
    var settingsJSON: [String: JSONValue] { Format.members(of: settings) }
}

/// What an operation's request came to: the preview of a dry run (200), or the operation the
/// orchestrator accepted (202).
enum OperationOutcome {
    case preview(OperationPreview)
    case accepted(AcceptedOperation)

    /// From a generated client's answer, whose accessors for the case it is not throw.
    init(accepted: () throws -> AcceptedOperation, preview: () throws -> OperationPreview) throws {
        if let accepted = try? accepted() { self = .accepted(accepted) } else { self = .preview(try preview()) }
    }
}
