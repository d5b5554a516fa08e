import ArgumentParser
import FleetContract
import Foundation

/// `fleetctl keys`: API keys (admin), from the registry.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Make, list and revoke API keys (admin).",
        subcommands: [ListKeys.self, CreateKey.self, RevokeKey.self], defaultSubcommand: ListKeys.self)
}

/// A key as the registry lists it (never its token).
struct APIKeySummary: Decodable, Sendable {
    var id: String
    var name: String
    var role: String
    var status: String
    var createdAt: Date
    var expiresAt: Date?
    var revokedAt: Date?

    private enum CodingKeys: String, CodingKey {
        case id, name, role, status
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case revokedAt = "revoked_at"
    }
}

/// `fleetctl keys list`.
struct ListKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List every API key, never with its token.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { context in
            try await context.printList(context.registry, "/v1/keys", as: APIKeySummary.self) { keys in
                var table = TextTable("id", "name", "role", "status", "created", "expires")
                for key in keys {
                    table.add(key.id, key.name, key.role, key.status, Format.date(key.createdAt), Format.date(key.expiresAt))
                }
                return table.render()
            }
            return .success
        }
    }
}

/// `fleetctl keys create NAME --role ROLE [--expires-in-days N] [--save FILE]`.
struct CreateKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Make an API key and print it (shown only this once), or write it to a file (mode 0600).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Who or what holds it; the audit trail names it.") var name: String
    @Option(help: "viewer (reads), operator (pipelines, operations, deployments) or admin (everything).") var role: String
    @Option(help: "Days until it expires (default: never).") var expiresInDays: Double?
    @Option(help: "Write the key to this file (mode 0600) instead of printing it.") var save: String?

    func run() async throws {
        try await global.run { context in
            var body: [String: JSONValue] = ["name": .string(name), "role": .string(role)]
            if let expiresInDays { body["expires_in_days"] = .number(expiresInDays) }
            let answer = try await context.registry.send(.POST, "/v1/keys", body: .object(body))
            let document = try answer.decode(JSONValue.self, from: context.registry.name)
            guard case .object(let fields) = document, case .string(let token)? = fields["token"] else {
                throw FleetctlError.unexpectedResponse(service: context.registry.name, detail: "no token in its answer")
            }
            if context.output == .json && save == nil {
                context.console.printJSON(document)
            } else if let save {
                try EnrollAgent.writePrivately(token + "\n", to: save)
                context.console.print("Made the \(role) key \(name); it is in \(save) (mode 0600).")
            } else {
                context.console.write(toStandardError: "Made the \(role) key \(name); it is shown only now:\n")
                context.console.print(token)
            }
            return .success
        }
    }
}

/// `fleetctl keys revoke KEY_ID [--yes]`.
struct RevokeKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke an API key: every service refuses it within a second.",
        discussion: "Without --yes you are asked to confirm; with no terminal to ask, nothing is revoked (exit 3).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The key's id (fleetctl keys list).") var key: String
    @Flag(name: [.customShort("y"), .long], help: "Revoke without the question.") var yes = false

    func run() async throws {
        try await global.run { context in
            if let refused = context.confirmation("revoke", "revoked", "key \(key)", question: "Revoke API key \(key)?", yes: yes) {
                return refused
            }
            let answer = try await context.registry.send(.DELETE, "/v1/keys/\(ServiceClient.segment(key))")
            if context.output == .json {
                context.console.printJSON(try answer.decode(JSONValue.self, from: context.registry.name))
            } else {
                let revoked = try answer.decode(APIKeySummary.self, from: context.registry.name)
                context.console.print("Revoked the API key \(revoked.name) (\(revoked.id), \(revoked.role)).")
            }
            return .success
        }
    }
}
