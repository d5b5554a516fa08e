import ServiceRuntime

/// The `orchestrator` executable. Owns desired state and pipeline assignments (schema `orchestrator`). Its domain work is not built yet (README, Status).
@main
enum OrchestratorMain {
    static func main() async {
        await ServiceMain.run(.orchestrator)
    }
}

extension ServiceDescriptor {
    static let orchestrator = ServiceDescriptor(
        name: "orchestrator", defaultHTTPPort: 8082, schema: DatabaseSchema(name: "orchestrator", migrations: []))
}
