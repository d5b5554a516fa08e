import FleetContract

/// One device's change in a preview, in a few words: the pipeline names before and after
/// (`(none) → people, plates`), or, when the names stay, what changed inside them (a stage's model
/// version, its processors, a setting's value).
enum ChangeDescription {
    static func describe(before: [PipelineView], after: [PipelineView]) -> String {
        let now = names(before)
        let next = names(after)
        guard now == next else { return "\(now) → \(next)" }
        var details: [String] = []
        for (old, new) in zip(before, after) {
            details += differences(old, new)
        }
        guard details.isEmpty else { return details.joined(separator: "; ") }
        // The same pipelines. With the same ids they are sent again (a retry); with new ids the
        // orchestrator made them anew (an unchanged pipeline keeps its id, so this is rare), and
        // the agent restarts them.
        return before.map(\.id) == after.map(\.id) ? "\(now) (sent again)" : "\(now) (unchanged, restarted: new pipeline ids)"
    }

    static func names(_ pipelines: [PipelineView]) -> String {
        pipelines.isEmpty ? "(none)" : pipelines.map(\.name).joined(separator: ", ")
    }

    /// What differs between two pipelines of the same name, stage by stage.
    private static func differences(_ old: PipelineView, _ new: PipelineView) -> [String] {
        let oldStages = old.stages.map(stageName)
        let newStages = new.stages.map(stageName)
        guard oldStages == newStages else {
            return ["\(new.name): \(oldStages.joined(separator: " | ")) → \(newStages.joined(separator: " | "))"]
        }
        var details: [String] = []
        for (index, (oldStage, newStage)) in zip(old.stages, new.stages).enumerated() {
            if oldStage.preProcessors != newStage.preProcessors || oldStage.postProcessors != newStage.postProcessors {
                details.append("\(new.name)[\(index)] processors: \(processors(oldStage)) → \(processors(newStage))")
            }
            let (oldSettings, newSettings) = (oldStage.settingsJSON, newStage.settingsJSON)
            let keys = Set(oldSettings.keys).union(newSettings.keys).sorted()
            for key in keys where oldSettings[key] != newSettings[key] {
                let from = oldSettings[key].map(Format.json) ?? "unset"
                let to = newSettings[key].map(Format.json) ?? "unset"
                details.append("\(new.name)[\(index)] \(key): \(from) → \(to)")
            }
        }
        return details
    }

    private static func stageName(_ stage: StageView) -> String {
        "\(stage.modelName)@\(stage.version)"
    }

    private static func processors(_ stage: StageView) -> String {
        let pre = stage.preProcessors.map(\.name).joined(separator: ",")
        let post = stage.postProcessors.map(\.name).joined(separator: ",")
        return "[\(pre)] model [\(post)]"
    }
}
