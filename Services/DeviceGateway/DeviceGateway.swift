import ServiceRuntime

/// The `device-gateway` executable. The bridge between the edge agents and the internal topics. Its domain work is not built yet (README, Status).
@main
enum DeviceGatewayMain {
    static func main() async {
        await ServiceMain.run(.deviceGateway)
    }
}

extension ServiceDescriptor {
    static let deviceGateway = ServiceDescriptor(name: "device-gateway", defaultHTTPPort: 8085)
}
