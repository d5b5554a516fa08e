import FleetContract
import Foundation

/// A JSON file the operator wrote (a pipeline, a version's default settings); `-` is standard
/// input. Every failure says which file and, for bad JSON, where it goes wrong.
enum JSONFile {
    static func read(_ path: String) throws -> JSONValue {
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard FileManager.default.fileExists(atPath: path) else { throw FleetctlError.invalidInput("no file \(path)") }
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw FleetctlError.invalidInput("cannot read \(path): \(error.localizedDescription)")
            }
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw FleetctlError.invalidInput("\(path) is not JSON: \(Self.syntaxError(in: data))")
        }
    }

    /// Where the JSON goes wrong: JSONDecoder only says that it does, JSONSerialization says
    /// where ("Invalid value around character 11.").
    private static func syntaxError(in data: Data) -> String {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return "not a JSON value"
        } catch {
            return ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? error.localizedDescription
        }
    }
}
