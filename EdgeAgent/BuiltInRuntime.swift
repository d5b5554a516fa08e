import DeviceProtocol
import FleetContract
import Foundation

/// Runs each pipeline in-process on synthetic frames: no camera, no accelerator, but the whole
/// path of a real runtime: stages are loaded (artifacts fetched and checked), their settings and
/// processors checked, and every frame goes through every stage, with real timings and
/// detections that follow the settings (a higher confidence threshold finds fewer objects).
actor BuiltInRuntime: PipelineRuntime {
    /// Pre- and post-processors this runtime knows; any other name fails the pipeline.
    static let preProcessors: Set<String> = ["resize", "letterbox", "normalize", "crop", "color_convert"]
    static let postProcessors: Set<String> = ["nms", "threshold", "tracker", "top_k", "zone_filter"]

    private struct Running {
        var definition: DesiredState.Pipeline
        var status: PipelineStatus
        /// The loaded chain, for a pipeline that runs.
        var model: SyntheticModel?
        var figures = PipelineFigures()

        /// One frame through the chain, timed; nothing for a pipeline that failed to load.
        mutating func takeFrame() {
            guard model != nil else { return }
            let clock = ContinuousClock()
            let started = clock.now
            let detections = model!.inferNextFrame()
            let elapsed = clock.now - started
            figures.frames += 1
            figures.detections += detections
            figures.latencies.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        }
    }

    private let frameInterval: Duration
    private let devices: Set<String>
    private let artifacts: ArtifactStore
    private var pipelines: [PipelineKey: Running] = [:]
    /// The runtime's one frame clock: every running pipeline takes a frame on each tick, so a
    /// server costs one timer however many pipelines it runs (with a timer per pipeline, a
    /// simulated fleet of 10,000 pipelines woke 10,000 times a second).
    private var clock: Task<Void, Never>?
    nonisolated let changes: AsyncStream<Void>

    init(fps: Double, devices: Set<String>, artifacts: ArtifactStore) {
        self.frameInterval = .seconds(1 / fps)
        self.devices = devices
        self.artifacts = artifacts
        // The built-in pipelines only change when applied; nothing is ever yielded.
        self.changes = AsyncStream { $0.finish() }
    }

    func apply(_ desired: [PipelineKey: DesiredState.Pipeline]) async -> [PipelineKey: PipelineStatus] {
        let plan = ReconcilePlan(current: pipelines.mapValues { ($0.definition, $0.status) }, desired: desired)
        for key in plan.stop {
            pipelines.removeValue(forKey: key)
        }
        for key in plan.start {
            pipelines.removeValue(forKey: key)
            let definition = desired[key]!
            do {
                let model = try await load(definition, on: key.deviceKey)
                pipelines[key] = Running(definition: definition, status: .running, model: model)
            } catch {
                pipelines[key] = Running(definition: definition, status: .failed(reason: "\(error)"))
            }
        }
        startOrStopClock()
        return pipelines.mapValues(\.status)
    }

    func statuses() -> [PipelineKey: PipelineStatus] { pipelines.mapValues(\.status) }

    func collectFigures() -> [PipelineKey: PipelineFigures] {
        var taken: [PipelineKey: PipelineFigures] = [:]
        forEachPipeline { key, running in
            guard running.model != nil else { return }
            taken[key] = running.figures
            running.figures = PipelineFigures()
        }
        return taken
    }

    func stopAll() {
        pipelines = [:]
        startOrStopClock()
    }

    // MARK: Frames

    /// Whether the frame clock runs (while at least one pipeline does).
    var ticking: Bool { clock != nil }

    /// Runs the clock while a pipeline runs, and only then.
    private func startOrStopClock() {
        let running = pipelines.values.contains { $0.model != nil }
        if running, clock == nil {
            clock = Task.detached(priority: .utility) { [weak self, frameInterval] in
                let clock = ContinuousClock()
                var next = clock.now
                while !Task.isCancelled {
                    do {  // holds the runtime for the frames only, not while it sleeps
                        guard let runtime = self else { return }
                        await runtime.takeFrames()
                    }
                    next += frameInterval
                    // Behind by more than a second (an overloaded host): skip frames rather than burst.
                    if next < clock.now - .seconds(1) { next = clock.now }
                    try? await Task.sleep(until: next, clock: clock)
                }
            }
        } else if !running, let task = clock {
            task.cancel()
            clock = nil
        }
    }

    /// One frame through every running pipeline, each timed on its own.
    private func takeFrames() {
        forEachPipeline { _, running in running.takeFrame() }
    }

    /// Changes every pipeline in place. By index: iterating `keys` while assigning would copy the
    /// whole table per pipeline (the iterator keeps the storage shared).
    private func forEachPipeline(_ body: (PipelineKey, inout Running) -> Void) {
        var index = pipelines.startIndex
        while index != pipelines.endIndex {
            body(pipelines.keys[index], &pipelines.values[index])
            pipelines.formIndex(after: &index)
        }
    }

    // MARK: Loading

    struct LoadFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Checks a pipeline and prepares its stages; the error says which stage and why.
    private func load(_ pipeline: DesiredState.Pipeline, on device: String) async throws -> SyntheticModel {
        guard devices.contains(device) else { throw LoadFailure(description: "unknown device '\(device)' on this server") }
        var stages: [SyntheticModel.Stage] = []
        for (index, stage) in pipeline.stages.enumerated() {
            let name = "stage \(index + 1) (\(stage.modelName) \(stage.version))"
            for processor in stage.preProcessors where !Self.preProcessors.contains(processor.name) {
                throw LoadFailure(description: "\(name): unknown pre-processor '\(processor.name)'")
            }
            for processor in stage.postProcessors where !Self.postProcessors.contains(processor.name) {
                throw LoadFailure(description: "\(name): unknown post-processor '\(processor.name)'")
            }
            if ArtifactStore.canFetch(stage.artifactURI) {
                do {
                    _ = try await artifacts.fetch(stage.artifactURI, sha256: stage.sha256)
                } catch {
                    throw LoadFailure(description: "\(name): \(error)")
                }
            }
            // The registry's known settings (Validate.settings there): thresholds from 0 to 1, and
            // the input size as a side or [width, height].
            func threshold(_ key: String, default value: Double) throws -> Double {
                guard let raw = stage.settings[key] else { return value }
                guard case .number(let number) = raw, (0...1).contains(number) else {
                    throw LoadFailure(description: "\(name): setting '\(key)' must be a number from 0 to 1")
                }
                return number
            }
            let pixels: Int
            switch stage.settings["input_size"] {
            case nil: pixels = 320 * 320
            case .number(let side)? where (32...4096).contains(side): pixels = Int(side * side)
            case .array(let sides)? where sides.count == 2 && sides.allSatisfy({ (32...4096).contains($0.number ?? 0) }):
                pixels = Int((sides[0].number ?? 0) * (sides[1].number ?? 0))
            default: throw LoadFailure(description: "\(name): setting 'input_size' must be a side or [width, height], 32 to 4096")
            }
            _ = try threshold("nms_threshold", default: 0.5)
            stages.append(
                SyntheticModel.Stage(
                    confidence: try threshold("confidence_threshold", default: 0.5), pixels: pixels,
                    suppressesOverlaps: stage.postProcessors.contains { $0.name == "nms" }
                ))
        }
        // A seed from the device and pipeline (FNV-1a), so that each pipeline sees its own frames.
        let seed = "\(device)/\(pipeline.id)".utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return SyntheticModel(stages: stages, seed: seed)
    }
}

/// The synthetic stand-in for a model chain: each stage scores candidate boxes of a generated
/// frame with work proportional to its input size, and keeps those above its confidence.
struct SyntheticModel: Sendable {
    struct Stage: Sendable {
        var confidence: Double
        /// Input pixels (width × height).
        var pixels: Int
        var suppressesOverlaps: Bool
    }

    var stages: [Stage]
    private var state: UInt64

    init(stages: [Stage], seed: UInt64) {
        self.stages = stages
        self.state = seed | 1
    }

    /// Runs one frame through every stage; returns the detections of the last stage.
    mutating func inferNextFrame() -> Int {
        var candidates = 64
        for stage in stages {
            // Work in proportion to the input's pixels (a 320×320 input is 100 rounds); its result
            // moves the threshold by up to ±0.5 %, as a real model's scores move with the image.
            var mix: UInt64 = 0
            for _ in 0..<(stage.pixels / 1024) { mix = mix &* 31 ^ nextRandom() }
            let threshold = stage.confidence + (Double(mix >> 54) / 1024 - 0.5) / 100
            var kept = 0
            for _ in 0..<candidates where Double(nextRandom() >> 11) / Double(1 << 53) >= threshold {
                kept += 1
            }
            candidates = stage.suppressesOverlaps ? (kept + 1) / 2 : kept
        }
        return candidates
    }

    private mutating func nextRandom() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
