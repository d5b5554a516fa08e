import ArgumentParser

/// `fleetctl`, the operator's command line: the inventory and the catalogue from the registry,
/// pipelines and operations from the orchestrator. Each subcommand is a small struct in
/// `Commands/`; what they share (HTTP, output, watching an operation) lives beside this file.
@main
struct Fleetctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleetctl",
        abstract: "Operate a ModelFleet control plane: sites, devices, models, pipelines and operations.",
        discussion: """
            Services: --registry (or FLEETCTL_REGISTRY_URL, default \(Endpoints.defaultRegistry)) and \
            --orchestrator (or FLEETCTL_ORCHESTRATOR_URL, default \(Endpoints.defaultOrchestrator)). \
            API key: --api-key-file, FLEETCTL_API_KEY, FLEETCTL_API_KEY_FILE or ~/.config/modelfleet/api-key.

            Exit status: 0 done (every device applied); 1 the operation finished with failed or \
            timed-out devices; 2 an error (the API refused the request, a service is unreachable, a \
            bad file); 3 not confirmed, nothing applied or deleted; 64 bad command-line usage.
            """,
        groupedSubcommands: [
            CommandGroup(
                name: "Inventory (registry)",
                subcommands: [
                    SitesCommand.self, DevicesCommand.self, CreateSiteCommand.self, CreateGroupCommand.self, DeleteGroupCommand.self,
                    RenameDeviceCommand.self, EnableDeviceCommand.self, DisableDeviceCommand.self, GroupDeviceCommand.self,
                    LabelDeviceCommand.self,
                ]),
            CommandGroup(name: "Access (registry)", subcommands: [AgentsCommand.self, KeysCommand.self]),
            CommandGroup(
                name: "Catalogue (registry)",
                subcommands: [
                    ModelsCommand.self, CreateModelCommand.self, UpdateModelCommand.self, LabelModelCommand.self, DeleteModelCommand.self,
                    AddVersionCommand.self, DeprecateVersionCommand.self, DeleteVersionCommand.self,
                ]),
            CommandGroup(
                name: "Pipelines on one device (orchestrator)",
                subcommands: [
                    PipelinesCommand.self, AddPipelineCommand.self, ReplacePipelineCommand.self, RemovePipelineCommand.self,
                    SetSettingsCommand.self,
                ]),
            CommandGroup(
                name: "Operations on many devices (orchestrator)",
                subcommands: [
                    AssignCommand.self, BulkSettingsCommand.self, OperationsCommand.self, OperationCommand.self, RevertCommand.self,
                    RetryCommand.self,
                ]),
            CommandGroup(name: "Deployments (orchestrator)", subcommands: [DeploymentsCommand.self]),
        ]
    )
}

/// The exit statuses `fleetctl` uses besides 0, documented in `docs/fleetctl.md`; scripts rely on
/// them, so they never change meaning.
enum ExitStatus {
    /// The operation finished, and some devices failed or timed out; or, with `--wait`, a
    /// deployment's instances were not all ready in time.
    static let devicesFailed = ExitCode(1)
    /// The request could not be made or was refused (HTTP error, unreachable service, bad input).
    static let error = ExitCode(2)
    /// An operation on many devices, or a deletion, was not confirmed (declined, or no terminal and
    /// no `--yes`).
    static let notConfirmed = ExitCode(3)
}
