import ArgumentParser
import FleetContract
import NIOHTTP1

/// The `--yes` of a command that deletes: without it the tool asks at a terminal, and deletes
/// nothing when there is none to ask (exit 3), as operations on many devices do.
struct DeletionOptions: ParsableArguments {
    @Flag(name: [.customShort("y"), .long], help: "Delete without the question.")
    var yes = false
}

/// `--add` and `--remove` of labels. The API replaces a whole list of labels, so the tool reads
/// the current list, changes it and writes it back; a change made by someone else in between is
/// overwritten, which for an operator's labels is an acceptable race.
struct LabelEdits: ParsableArguments {
    @Option(name: .customLong("add"), help: "A label to add; repeat for several.")
    var added: [String] = []

    @Option(name: .customLong("remove"), help: "A label to remove; repeat for several.")
    var removed: [String] = []

    func validate() throws {
        guard !(added.isEmpty && removed.isEmpty) else { throw ValidationError("give --add and/or --remove") }
        if let both = added.first(where: { removed.contains($0) }) {
            throw ValidationError("the label '\(both)' is both added and removed")
        }
    }

    /// `labels` with the edits made: the removed ones dropped, the added ones in, sorted as the
    /// registry keeps them.
    func applied(to labels: [String]) -> [String] {
        Array(Set(labels).subtracting(removed).union(added)).sorted()
    }
}

extension CommandContext {
    /// Sends a write to the registry and prints its answer: as the service wrote it with
    /// `--output json`, else as `render` tells.
    func write<Value: Decodable & Sendable>(
        _ method: HTTPMethod, _ path: String, body: JSONValue?, as type: Value.Type, render: (Value) -> String
    ) async throws -> ExitCode {
        let answer = try await registry.send(method, path, body: body)
        if output == .json {
            console.printJSON(try answer.decode(JSONValue.self, from: registry.name))
        } else {
            console.print(render(try answer.decode(type, from: registry.name)))
        }
        return .success
    }

    /// Nil when the operator confirmed `question` (`--yes`, or yes at a terminal); else, having
    /// said why on stderr, the exit status 3: `verb` and `past` name the action
    /// ("revoke", "revoked"), `what` its object.
    func confirmation(_ verb: String, _ past: String, _ what: String, question: String, yes: Bool) -> ExitCode? {
        if yes { return nil }
        guard console.stdinIsTerminal else {
            console.error("error: not \(past): there is no terminal to ask whether to \(verb) \(what); pass --yes to \(verb)")
            return ExitStatus.notConfirmed
        }
        guard console.confirm(question) else {
            console.error("Not \(past).")
            return ExitStatus.notConfirmed
        }
        return nil
    }

    /// Deletes `what` at `path` (of the registry unless `service` says) once the operator has confirmed it (`--yes`, or yes at a
    /// terminal), then prints `Deleted …` or `{"deleted": true, …identity}`. Not confirmed: exit 3
    /// and nothing is sent.
    func delete(
        _ path: String, on service: ServiceClient? = nil, query: [(String, String)] = [], what: String, identity: [String: JSONValue],
        options: DeletionOptions
    ) async throws -> ExitCode {
        try await delete(what: what, identity: identity, options: options) { _ = try await (service ?? registry).send(.DELETE, path, query: query) }
    }

    /// As ``delete(_:on:query:what:identity:options:)``, where `perform` deletes (a generated
    /// client's call).
    func delete(what: String, identity: [String: JSONValue], options: DeletionOptions, _ perform: () async throws -> Void) async throws -> ExitCode {
        if let refused = confirmation("delete", "deleted", what, question: "Delete \(what)?", yes: options.yes) { return refused }
        try await perform()
        if output == .json {
            console.printJSON(.object(identity.merging(["deleted": .bool(true)]) { $1 }))
        } else {
            console.print("Deleted \(what).")
        }
        return .success
    }
}
