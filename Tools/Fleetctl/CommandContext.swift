import FleetContract

/// What a command works with: the services, the output format and the terminal.
struct CommandContext: Sendable {
    let registry: ServiceClient
    let orchestrator: ServiceClient
    let metrics: ServiceClient
    let autoscaler: ServiceClient
    let loadBalancer: ServiceClient
    let output: OutputFormat
    let console: Console

    /// Prints a list, every page of it: one JSON array of the items as the service wrote them, or
    /// the table `render` makes of them.
    func printList<Item: Decodable & Sendable>(
        _ service: ServiceClient, _ path: String, query: [(String, String)] = [], as type: Item.Type, render: ([Item]) -> String
    ) async throws {
        if output == .json {
            console.printJSON(.array(try await service.all(path, query: query, as: JSONValue.self)))
        } else {
            console.print(render(try await service.all(path, query: query, as: type)))
        }
    }
}
