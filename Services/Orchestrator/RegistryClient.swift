import FleetContract
import Foundation
import MQTT
import ServiceRuntime

/// The orchestrator's questions to the registry, over MQTT 5 request/response
/// (`docs/mqtt-contract.md`): the devices of a selection, and model versions.
struct RegistryClient: RegistryLookup {
    let mqtt: MQTTClient
    var timeout: Duration = .seconds(10)

    /// The registry is down or slow: the operator can try again.
    static func unavailable(_ error: any Error) -> DomainError {
        .unavailable(code: "registry_unavailable", "the registry did not answer: \(error)")
    }

    /// Devices matching `targets` (ids, or the selector's sites, groups and labels), with their
    /// flags. Ids that do not exist are simply absent.
    func devices(_ targets: DeviceTargets) async throws -> [RegistryDevice] {
        var found: [UUID: RegistryDevice] = [:]
        if let ids = targets.deviceIDs, !ids.isEmpty {
            for device in try await query(["device_ids": .array(ids.map { .string($0.lowercasedString) })]) { found[device.id] = device }
        }
        var selector: [String: JSONValue] = [:]
        if let sites = targets.siteIDs, !sites.isEmpty { selector["site_ids"] = .array(sites.map { .string($0) }) }
        if let groups = targets.groupIDs, !groups.isEmpty { selector["group_ids"] = .array(groups.map { .string($0.lowercasedString) }) }
        if let labels = targets.labels, !labels.isEmpty { selector["labels"] = .array(labels.map { .string($0) }) }
        if !selector.isEmpty {
            for device in try await query(selector) { found[device.id] = device }
        }
        return found.values.sorted { ($0.siteID, $0.serverID, $0.key) < ($1.siteID, $1.serverID, $1.key) }
    }

    /// The sites among `siteIDs` with at least one reachable device (a server online).
    func onlineSites(_ siteIDs: [String]) async throws -> Set<String> {
        guard !siteIDs.isEmpty else { return [] }
        let reachable = try await query(["site_ids": .array(siteIDs.map { .string($0) }), "online": .bool(true)])
        return Set(reachable.map(\.siteID))
    }

    private func query(_ selection: [String: JSONValue]) async throws -> [RegistryDevice] {
        let answer: MQTTMessage
        do {
            answer = try await mqtt.request(
                Topic.registryDeviceQuery.path, payload: try ContractCoding.encoder.encode(JSONValue.object(selection)), timeout: timeout)
        } catch {
            throw Self.unavailable(error)
        }
        return try ContractCoding.decoder.decode([RegistryDevice].self, from: answer.payload)
    }

    func servers() async throws -> [RegistryServer] {
        let answer: MQTTMessage
        do {
            answer = try await mqtt.request(Topic.registryServerQuery.path, payload: Data("{}".utf8), timeout: timeout)
        } catch {
            throw Self.unavailable(error)
        }
        return try ContractCoding.decoder.decode([RegistryServer].self, from: answer.payload)
    }

    /// A model version; nil when the registry does not know it.
    func modelVersion(modelID: UUID, version: String) async throws -> RegistryModelVersion? {
        let body = JSONValue.object(["model_id": .string(modelID.lowercasedString), "version": .string(version)])
        do {
            let answer = try await mqtt.request(
                Topic.registryModelVersionQuery.path, payload: try ContractCoding.encoder.encode(body), timeout: timeout)
            return try ContractCoding.decoder.decode(RegistryModelVersion.self, from: answer.payload)
        } catch MQTTError.requestFailed(_, let message) where message.contains("no such model version") {
            return nil
        } catch let error as DecodingError {
            throw error
        } catch {
            throw Self.unavailable(error)
        }
    }
}
