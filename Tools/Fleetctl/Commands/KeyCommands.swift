import ArgumentParser
import FleetContract
import Foundation
import RegistryContract

/// `fleetctl keys`: API keys (admin), from the registry.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Make, list and revoke API keys (admin).",
        subcommands: [ListKeys.self, CreateKey.self, RevokeKey.self], defaultSubcommand: ListKeys.self)
}

/// `fleetctl keys list`.
struct ListKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List every API key, never with its token.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            let keys = try await registry.call { try await registry.registryAPI.listAPIKeys().ok.body.json.items }
            return try context.report(keys) { keys in
                var table = TextTable("id", "name", "role", "status", "created", "expires")
                for key in keys {
                    table.add(key.id, key.name, key.role.rawValue, key.status.rawValue, Format.date(key.createdAt), Format.date(key.expiresAt))
                }
                return table.render()
            }
        }
    }
}

/// `fleetctl keys create NAME --role ROLE [--expires-in-days N] [--save FILE]`.
struct CreateKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Make an API key and print it (shown only this once), or write it to a file (mode 0600).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Who or what holds it; the audit trail names it.") var name: String
    @Option(help: "viewer (reads), operator (pipelines, operations, deployments) or admin (everything).")
    var role: RegistrySchema.APIKeyRequest.RolePayload
    @Option(help: "Days until it expires (default: never).") var expiresInDays: Double?
    @Option(help: "Write the key to this file (mode 0600) instead of printing it.") var save: String?

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            let request = RegistrySchema.APIKeyRequest(name: name, role: role, expiresInDays: expiresInDays)
            let made = try await registry.call { try await registry.registryAPI.createAPIKey(body: .json(request)).created.body.json }
            if context.output == .json && save == nil {
                try context.printJSON(made)
            } else if let save {
                try EnrollAgent.writePrivately(made.token + "\n", to: save)
                context.console.print("Made the \(role.rawValue) key \(name); it is in \(save) (mode 0600).")
            } else {
                context.console.write(toStandardError: "Made the \(role.rawValue) key \(name); it is shown only now:\n")
                context.console.print(made.token)
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
            let registry = context.registry
            let revoked = try await registry.call { try await registry.registryAPI.revokeAPIKey(path: .init(keyId: key)).ok.body.json }
            return try context.report(revoked) { "Revoked the API key \($0.name) (\($0.id), \($0.role.rawValue))." }
        }
    }
}

extension RegistrySchema.APIKeyRequest.RolePayload: ExpressibleByArgument {}
