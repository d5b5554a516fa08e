import ArgumentParser
import FleetContract
import Foundation
import RegistryContract

/// `fleetctl agents`: edge agents' broker accounts (enrolments), from the registry.
struct AgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents", abstract: "Enrol edge agents (their broker accounts), list them and revoke them.",
        subcommands: [ListEnrollments.self, EnrollAgent.self, RevokeAgent.self], defaultSubcommand: ListEnrollments.self)
}

/// `fleetctl agents list [--site SITE] [--status active|revoked]`.
struct ListEnrollments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List enrolled agents.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Only the agents of this site.") var site: String?
    @Option(help: "active or revoked.") var status: Operations.ListEnrollments.Input.Query.StatusPayload?

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            let enrollments = try await registry.allPages("/v1/enrollments") { cursor in
                let page = try await registry.registryAPI.listEnrollments(query: .init(siteId: site, status: status, cursor: cursor)).ok.body.json
                return (page.items, page.nextCursor)
            }
            return try context.report(enrollments) { enrollments in
                var table = TextTable("agent", "site", "status", "enrolled", "revoked")
                for enrollment in enrollments {
                    table.add(
                        enrollment.agentId, enrollment.siteId, enrollment.status.rawValue, Format.date(enrollment.enrolledAt),
                        Format.date(enrollment.revokedAt))
                }
                return table.render()
            }
        }
    }
}

/// `fleetctl agents enroll AGENT_ID --site SITE [--save FILE]`.
struct EnrollAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Create an agent's broker account and print its configuration file (with its password, shown only this once).",
        discussion: """
            The file is complete but for the server's capacity and devices: edit those, then start the agent with \
            `edge-agent run --config FILE`. With --save the file is written with mode 0600 instead of printed. \
            An agent enrolled already is refused unless --replace, which gives it a new password (the old one stops \
            working and the agent is disconnected).
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The agent id: 1 to 128 letters, digits, '-', '_' or '.'; the agent connects with it as its username.")
    var agent: String
    @Option(help: "The site the agent's server is in.") var site: String
    @Option(help: "The server's display name (default: the agent id).") var serverName: String?
    @Flag(help: "Enrol again an agent enrolled already: new credentials.") var replace = false
    @Option(help: "Write the configuration file here (mode 0600) instead of printing it.") var save: String?

    func run() async throws {
        try await global.run { context in
            let registry = context.registry
            let request = RegistrySchema.EnrollmentRequest(agentId: agent, siteId: site, serverName: serverName, replace: replace)
            let enrolled = try await registry.call { try await registry.registryAPI.enrollAgent(body: .json(request)).created.body.json }
            if context.output == .json {
                try context.printJSON(enrolled)
                return .success
            }
            let configuration = try ContractCoding.recast(enrolled.configuration, as: JSONValue.self)
            let text = Format.prettyJSON(configuration) + "\n"
            if let save {
                try Self.writePrivately(text, to: save)
                context.console.print("Enrolled agent \(agent) in site \(site); its configuration, with its password, is in \(save) (mode 0600).")
            } else {
                context.console.write(
                    toStandardError: "Enrolled agent \(agent) in site \(site). Its configuration (the password is shown only now):\n")
                context.console.print(Format.prettyJSON(configuration))
            }
            return .success
        }
    }

    /// Writes `text` to `path` readable by its owner only, from the first byte.
    static func writePrivately(_ text: String, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw FleetctlError.invalidInput("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        fchmod(descriptor, 0o600)
        let bytes = Array(text.utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else {
            throw FleetctlError.invalidInput("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// `fleetctl agents revoke AGENT_ID [--yes]`.
struct RevokeAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Remove an agent's broker account: it is disconnected at once and refused from then on.",
        discussion: "Without --yes you are asked to confirm; with no terminal to ask, nothing is revoked (exit 3).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The agent id.") var agent: String
    @Flag(name: [.customShort("y"), .long], help: "Revoke without the question.") var yes = false

    func run() async throws {
        try await global.run { context in
            let question = "Revoke agent \(agent)? It is disconnected and cannot connect again until enrolled anew."
            if let refused = context.confirmation("revoke", "revoked", "agent \(agent)", question: question, yes: yes) { return refused }
            let registry = context.registry
            let revoked = try await registry.call { try await registry.registryAPI.revokeEnrollment(path: .init(agentId: agent)).ok.body.json }
            return try context.report(revoked) { enrollment in
                "Revoked agent \(enrollment.agentId) (site \(enrollment.siteId)) at \(Format.date(enrollment.revokedAt)): disconnected, refused from now on."
            }
        }
    }
}

extension Operations.ListEnrollments.Input.Query.StatusPayload: ExpressibleByArgument {}
