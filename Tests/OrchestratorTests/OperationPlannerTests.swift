import Foundation
import Testing

@testable import DeviceProtocol
@testable import FleetContract
@testable import Orchestrator
@testable import ServiceRuntime

private func device(
    _ name: String, site: String = "plant-a", enabled: Bool = true, gone: Bool = false, pipelines: Bool = true, reachable: Bool = true
)
    -> RegistryDevice
{
    RegistryDevice(
        id: UUID(), serverID: "\(site)-edge", siteID: site, key: name, name: name, enabled: enabled, gone: gone, groupID: nil, labels: [],
        reachable: reachable, supportsPipelines: pipelines)
}

private func pipeline(_ name: String, confidence: Double = 0.4) -> DesiredState.Pipeline {
    DesiredState.Pipeline(
        id: name.lowercased(), name: name,
        stages: [
            .init(
                modelID: UUID(uuidString: "0E7C2B0A-5D55-4C43-8F39-4B1F1C9B6D10")!, modelName: "yolo", version: "1.0.0", artifactURI: "s3://m/y.onnx",
                sha256: String(repeating: "a", count: 64), settings: ["confidence_threshold": .number(confidence)])
        ])
}

@Suite("Operation planner")
struct OperationPlannerTests {
    @Test("a bulk assignment replaces every eligible device's pipelines and skips the others with their reason")
    func assign() throws {
        let ready = device("cam-1")
        let same = device("cam-2")
        let disabled = device("cam-3", enabled: false)
        let gone = device("cam-4", gone: true)
        let noPipelines = device("cam-5", pipelines: false)
        let plan = try OperationPlanner.plan(
            .assign([pipeline("People")]), devices: [ready, same, disabled, gone, noPipelines],
            current: [ready.id: [pipeline("Cars")], same.id: [pipeline("People")]], single: false)
        #expect(plan.changes == [DeviceChange(device: ready, before: [pipeline("Cars")], after: [pipeline("People")])])
        #expect(
            plan.skipped.map(\.reason) == [
                "already runs this", "disabled", "gone: its server no longer lists it", "its server does not support pipelines",
            ])
        #expect(plan.skipped.map(\.deviceID) == [same.id, disabled.id, gone.id, noPipelines.id])
    }

    @Test("assigning what a device already runs keeps the running pipeline's id, so nothing restarts")
    func assignIsIdempotent() throws {
        let camera = device("cam-1")
        var fresh = pipeline("People")
        fresh.id = "new-id"
        let plan = try OperationPlanner.plan(
            .assign([fresh, pipeline("Cars")]), devices: [camera], current: [camera.id: [pipeline("People")]], single: false)
        #expect(plan.changes.first?.after.map(\.id) == ["people", "cars"])
        let again = try OperationPlanner.plan(.assign([fresh]), devices: [camera], current: [camera.id: [pipeline("People")]], single: false)
        #expect(again.changes.isEmpty && again.skipped.map(\.reason) == ["already runs this"])
    }

    @Test("one device: add, replace, remove, settings; a device or position that cannot take it is an error naming the field")
    func singleDevice() throws {
        let camera = device("cam-1")
        let current = [camera.id: [pipeline("People"), pipeline("Cars")]]
        func after(_ edit: PipelineEdit) throws -> [DesiredState.Pipeline] {
            try OperationPlanner.plan(edit, devices: [camera], current: current, single: true).changes.first?.after ?? []
        }
        #expect(try after(.add(pipeline("Bikes"))).map(\.name) == ["People", "Cars", "Bikes"])
        #expect(try after(.replace(index: 1, with: pipeline("Bikes"))).map(\.name) == ["People", "Bikes"])
        #expect(try after(.remove(index: 0)).map(\.name) == ["Cars"])
        let tuned = try after(.updateSettings(pipeline: .index(1), stage: 0, settings: ["nms_threshold": .number(0.6)]))
        #expect(tuned[1].stages[0].settings == ["confidence_threshold": .number(0.4), "nms_threshold": .number(0.6)])
        #expect(tuned[1].id == "cars", "a settings change keeps the pipeline's id")

        func failure(_ edit: PipelineEdit, on target: RegistryDevice = camera) -> APIError? {
            do {
                _ = try OperationPlanner.plan(edit, devices: [target], current: current, single: true)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure(.remove(index: 2))?.field == "index")
        #expect(failure(.remove(index: 2))?.status == .notFound)
        #expect(failure(.replace(index: 5, with: pipeline("X")))?.field == "index")
        #expect(failure(.updateSettings(pipeline: .index(0), stage: 3, settings: [:]))?.field == "stage")
        #expect(
            failure(.updateSettings(pipeline: .index(0), stage: 0, settings: ["confidence_threshold": .number(2)]))?.field
                == "settings.confidence_threshold")
        #expect(failure(.add(pipeline("X")), on: device("cam-9", enabled: false))?.status == .conflict)
        #expect(failure(.updateSettings(pipeline: .index(0), stage: 0, settings: ["confidence_threshold": .number(0.4)]))?.code == "no_change")
    }

    @Test("settings across devices find the pipeline by name; devices without it are skipped")
    func bulkSettings() throws {
        let first = device("cam-1")
        let second = device("cam-2")
        let plan = try OperationPlanner.plan(
            .updateSettings(pipeline: .name("People"), stage: 0, settings: ["confidence_threshold": .number(0.7)]), devices: [first, second],
            current: [first.id: [pipeline("Cars"), pipeline("People")], second.id: [pipeline("Cars")]], single: false)
        #expect(plan.changes.count == 1)
        #expect(plan.changes.first?.after[1].stages[0].settings["confidence_threshold"] == .number(0.7))
        #expect(plan.skipped.map(\.reason) == ["runs no pipeline named 'People'"])
    }

    @Test("revert restores each device's list; retry sends again even what is already recorded")
    func restoreAndResend() throws {
        let camera = device("cam-1")
        let current = [camera.id: [pipeline("People")]]
        let reverted = try OperationPlanner.plan(.restore([camera.id: []]), devices: [camera], current: current, single: false)
        #expect(reverted.changes.first?.after == [])
        let unchanged = try OperationPlanner.plan(.restore([camera.id: [pipeline("People")]]), devices: [camera], current: current, single: false)
        #expect(unchanged.changes.isEmpty && unchanged.skipped.count == 1)
        let resent = try OperationPlanner.plan(.resend([camera.id: [pipeline("People")]]), devices: [camera], current: current, single: false)
        #expect(resent.changes.count == 1)
    }

    @Test("offline sites are the touched sites without a server online")
    func offlineSites() throws {
        let plan = try OperationPlanner.plan(
            .assign([pipeline("People")]), devices: [device("a", site: "north"), device("b", site: "south"), device("c", site: "east")], current: [:],
            single: false)
        #expect(OperationPlanner.offlineSites(of: plan, online: ["north"]) == ["east", "south"])
    }
}
