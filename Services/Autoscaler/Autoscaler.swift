import ServiceRuntime

/// The `autoscaler` executable. Turns deployment snapshots into scaling decisions. Its domain work is not built yet (README, Status).
@main
enum AutoscalerMain {
    static func main() async {
        await ServiceMain.run(.autoscaler)
    }
}

extension ServiceDescriptor {
    static let autoscaler = ServiceDescriptor(name: "autoscaler", defaultHTTPPort: 8083)
}
