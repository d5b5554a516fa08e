import DeviceProtocol
import Foundation

/// One pipeline on one device.
struct PipelineKey: Hashable, Sendable, Comparable {
    var deviceKey: String
    var pipelineID: String

    static func < (lhs: PipelineKey, rhs: PipelineKey) -> Bool {
        (lhs.deviceKey, lhs.pipelineID) < (rhs.deviceKey, rhs.pipelineID)
    }
}

/// Where a pipeline stands in a runtime.
enum PipelineStatus: Sendable, Equatable {
    case running
    case failed(reason: String)
}

/// What a runtime measured of one pipeline since the last time it was asked.
struct PipelineFigures: Sendable, Equatable {
    var frames = 0
    var detections = 0
    var errors = 0
    /// Inference latency of each frame, milliseconds.
    var latencies: [Double] = []
}

/// Runs pipelines: the agent hands it every pipeline of the desired state, and it starts, keeps,
/// restarts or stops them so that exactly those run.
protocol PipelineRuntime: Sendable {
    /// Makes `desired` the set of running pipelines and returns the state of each. A pipeline
    /// that cannot start is `failed` with its reason; the others run regardless.
    func apply(_ desired: [PipelineKey: DesiredState.Pipeline]) async -> [PipelineKey: PipelineStatus]
    /// The current state of every pipeline of the last apply.
    func statuses() async -> [PipelineKey: PipelineStatus]
    /// The figures of every running pipeline since the last call, and resets them.
    func collectFigures() async -> [PipelineKey: PipelineFigures]
    /// Yields whenever a pipeline's state changes by itself (a process exits, restarts).
    var changes: AsyncStream<Void> { get }
    func stopAll() async
}

/// Which pipelines an apply starts, stops or keeps: a pure comparison of what runs with what is
/// desired, shared by the runtimes.
struct ReconcilePlan: Equatable, Sendable {
    /// New pipelines, changed ones (a stage, a setting, a processor differs), and ones that failed
    /// before (a new generation retries them).
    var start: [PipelineKey] = []
    var stop: [PipelineKey] = []
    /// Running and unchanged: left alone, so applying the same document twice changes nothing.
    var keep: [PipelineKey] = []

    init(current: [PipelineKey: (definition: DesiredState.Pipeline, status: PipelineStatus)], desired: [PipelineKey: DesiredState.Pipeline]) {
        for key in desired.keys.sorted() {
            if let existing = current[key], existing.definition == desired[key], existing.status == .running {
                keep.append(key)
            } else {
                start.append(key)
            }
        }
        stop = current.keys.filter { desired[$0] == nil }.sorted()
    }
}
