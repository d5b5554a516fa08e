import Foundation

/// Where fleetctl finds its API key: `--api-key-file`, `$FLEETCTL_API_KEY`, the file
/// `$FLEETCTL_API_KEY_FILE`, else `~/.config/modelfleet/api-key`. A key file others may read is
/// refused: whoever reads it acts with the key's role.
enum APIKeySource {
    static func key(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        if let option { return try read(option, required: true) }
        if let key = environment["FLEETCTL_API_KEY"]?.trimmingCharacters(in: .whitespacesAndNewlines), !key.isEmpty { return key }
        if let path = environment["FLEETCTL_API_KEY_FILE"], !path.isEmpty { return try read(path, required: true) }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return try read("\(home)/.config/modelfleet/api-key", required: false)
    }

    private static func read(_ path: String, required: Bool) throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw FleetctlError.invalidInput("no API key file \(path)") }
            return nil
        }
        if let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw FleetctlError.invalidInput("\(path) may be read by others (mode \(String(mode, radix: 8))); chmod 600 it")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw FleetctlError.invalidInput("cannot read \(path)") }
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty else { throw FleetctlError.invalidInput("\(path) is empty") }
        return key
    }
}
