import ServiceRuntime

/// The `registry` executable. Owns the model catalogue and the fleet inventory (schema `registry`). Its domain work is not built yet (README, Status).
@main
enum RegistryMain {
    static func main() async {
        await ServiceMain.run(.registry)
    }
}

extension ServiceDescriptor {
    static let registry = ServiceDescriptor(name: "registry", defaultHTTPPort: 8081, schema: DatabaseSchema(name: "registry", migrations: []))
}
