// swift-tools-version:6.2
import PackageDescription

/// One set of compiler settings for every target of ours: Swift 6 language mode (strict
/// concurrency) is the tools-version default, and every warning is an error so that none lands.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .treatAllWarnings(as: .error),
]

/// The generated contract modules': swift-openapi-generator's imports are `package import` in
/// every file, and Swift 6.3 warns about each one a file does not use (6.4 takes the generator's
/// `@diagnose` to silence them). Generated code is not ours to reword, so its warnings are off.
let generatedSwiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .unsafeFlags(["-suppress-warnings"]),
]

let package = Package(
    name: "ModelFleet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "registry", targets: ["Registry"]),
        .executable(name: "orchestrator", targets: ["Orchestrator"]),
        .executable(name: "autoscaler", targets: ["Autoscaler"]),
        .executable(name: "metrics-aggregator", targets: ["MetricsAggregator"]),
        .executable(name: "device-gateway", targets: ["DeviceGateway"]),
        .executable(name: "load-balancer", targets: ["LoadBalancer"]),
        .executable(name: "edge-agent", targets: ["EdgeAgent"]),
        .executable(name: "fleetctl", targets: ["Fleetctl"]),
        .executable(name: "mqtt-bench", targets: ["MQTTBenchmark"]),
        .executable(name: "registry-bench", targets: ["RegistryBenchmark"]),
        .executable(name: "gateway-bench", targets: ["GatewayBenchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Spec-first REST (issue 17, decision 91): the code scripts/generate-openapi writes with
        // swift-openapi-generator's CLI needs only its runtime and the two transports.
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client.git", from: "1.5.0"),
    ],
    targets: [
        // MARK: Shared libraries

        .systemLibrary(
            name: "CMosquitto",
            path: "Shared/CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        .target(
            name: "MQTT",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/MQTT",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FleetContract",
            path: "Shared/FleetContract",
            swiftSettings: swiftSettings
        ),
        .target(name: "ChildProcesses", path: "Shared/ChildProcesses", swiftSettings: swiftSettings),
        .systemLibrary(name: "CZlib", path: "Shared/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // HdrHistogram's layout, merging and standard V2 encoding: what agents send and the
        // metrics aggregator adds up.
        .target(name: "Histograms", dependencies: ["CZlib"], path: "Shared/Histograms", swiftSettings: swiftSettings),
        .target(
            name: "DeviceProtocol",
            dependencies: ["FleetContract"],
            path: "Shared/DeviceProtocol",
            // The JSON Schemas of docs/device-protocol.md, compiled into the binary: the gateway
            // validates with exactly the files device makers read.
            resources: [.embedInCode("Schemas")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceRuntime",
            dependencies: [
                "MQTT",
                "FleetContract",
                "OpenAPISupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/ServiceRuntime",
            swiftSettings: swiftSettings
        ),
        // What generated servers and clients share: the contracts' date format, their JSON options.
        .target(
            name: "OpenAPISupport",
            dependencies: ["FleetContract", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/OpenAPISupport",
            swiftSettings: swiftSettings
        ),
        // A service's REST contract as Swift: the types, server and client that
        // scripts/generate-openapi writes from Services/<Name>/openapi.yaml (committed, not edited).
        .target(
            name: "MetricsAggregatorContract",
            dependencies: ["FleetContract", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/Contracts/MetricsAggregatorContract",
            exclude: ["openapi-generator-config.yaml"],
            swiftSettings: generatedSwiftSettings
        ),
        .target(
            name: "AutoscalerContract",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/Contracts/AutoscalerContract",
            exclude: ["openapi-generator-config.yaml"],
            swiftSettings: generatedSwiftSettings
        ),
        .target(
            name: "OrchestratorContract",
            dependencies: ["FleetContract", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/Contracts/OrchestratorContract",
            exclude: ["openapi-generator-config.yaml"],
            swiftSettings: generatedSwiftSettings
        ),
        .target(
            name: "RegistryContract",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/Contracts/RegistryContract",
            exclude: ["openapi-generator-config.yaml"],
            swiftSettings: generatedSwiftSettings
        ),
        .target(
            name: "LoadBalancerContract",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            path: "Shared/Contracts/LoadBalancerContract",
            exclude: ["openapi-generator-config.yaml"],
            swiftSettings: generatedSwiftSettings
        ),

        // MARK: Services (thin executables)

        .executableTarget(
            name: "Registry",
            dependencies: [
                "ServiceRuntime", "FleetContract", "MQTT", "RegistryContract",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Registry",
            // The REST contract, the source of RegistryOpenAPI.swift (scripts/generate-openapi).
            exclude: ["openapi.yaml"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Orchestrator",
            dependencies: [
                "ServiceRuntime", "FleetContract", "DeviceProtocol", "MQTT", "OrchestratorContract",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Orchestrator",
            // The REST contract, the source of OrchestratorOpenAPI.swift (scripts/generate-openapi).
            exclude: ["openapi.yaml"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Autoscaler",
            dependencies: [
                "ServiceRuntime", "FleetContract", "MQTT", "AutoscalerContract",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Autoscaler",
            exclude: ["openapi.yaml"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "MetricsAggregator",
            dependencies: [
                "ServiceRuntime", "FleetContract", "DeviceProtocol", "Histograms", "MQTT", "MetricsAggregatorContract",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/MetricsAggregator",
            exclude: ["openapi.yaml"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DeviceGateway",
            dependencies: [
                "ServiceRuntime", "DeviceProtocol", "FleetContract", "MQTT",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/DeviceGateway",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "LoadBalancer",
            dependencies: [
                "ServiceRuntime", "FleetContract", "MQTT", "ChildProcesses", "LoadBalancerContract",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/LoadBalancer",
            exclude: ["openapi.yaml"],
            swiftSettings: swiftSettings
        ),

        // MARK: The edge agent (runs on edge servers, not in the control plane)

        .executableTarget(
            name: "EdgeAgent",
            dependencies: [
                "DeviceProtocol", "FleetContract", "MQTT", "ChildProcesses", "Histograms",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "EdgeAgent",
            swiftSettings: swiftSettings
        ),

        // MARK: The operator's command-line tool

        .executableTarget(
            name: "Fleetctl",
            dependencies: [
                "FleetContract", "MetricsAggregatorContract", "AutoscalerContract", "LoadBalancerContract", "RegistryContract",
                "OrchestratorContract",
                "OpenAPISupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // Deployment files may be YAML, as operators write them for other tools.
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Tools/Fleetctl",
            swiftSettings: swiftSettings
        ),

        // MARK: Benchmarks

        .executableTarget(
            name: "MQTTBenchmark",
            dependencies: [
                "MQTT",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/MQTTBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "RegistryBenchmark",
            dependencies: [
                "MQTT",
                "FleetContract",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/RegistryBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "GatewayBenchmark",
            dependencies: [
                "MQTT",
                "FleetContract",
                "DeviceProtocol",
                "ChildProcesses",
                "Histograms",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/GatewayBenchmark",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests

        .target(
            name: "TestSupport",
            dependencies: [
                "MQTT", "ChildProcesses", "ServiceRuntime", "FleetContract", .product(name: "Logging", package: "swift-log"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "FleetContractTests", dependencies: ["FleetContract"], swiftSettings: swiftSettings),
        .testTarget(name: "HistogramsTests", dependencies: ["Histograms"], swiftSettings: swiftSettings),
        .testTarget(
            name: "AutoscalerTests",
            dependencies: [
                "Autoscaler", "FleetContract", "ServiceRuntime", "TestSupport", .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "MetricsAggregatorTests",
            dependencies: [
                "MetricsAggregator", "Histograms", "DeviceProtocol", "FleetContract", "ServiceRuntime", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(name: "DeviceProtocolTests", dependencies: ["DeviceProtocol", "FleetContract"], swiftSettings: swiftSettings),
        .testTarget(name: "DeviceGatewayTests", dependencies: ["DeviceGateway", "DeviceProtocol", "FleetContract"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EdgeAgentTests",
            dependencies: [
                "EdgeAgent", "DeviceProtocol", "FleetContract",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FleetProcessTests",
            dependencies: [
                "TestSupport", "MQTT", "FleetContract", "DeviceProtocol", "ChildProcesses", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ServiceRuntimeTests",
            dependencies: [
                "ServiceRuntime", "TestSupport", "FleetContract", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"), .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RegistryTests",
            dependencies: [
                "Registry", "TestSupport", "MQTT", "FleetContract", "ChildProcesses", "ServiceRuntime",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "OrchestratorTests",
            dependencies: [
                "Orchestrator", "TestSupport", "ChildProcesses", "DeviceProtocol", "FleetContract", "ServiceRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "ServiceTests", dependencies: ["TestSupport", "MQTT", "FleetContract"], swiftSettings: swiftSettings),
        .testTarget(
            name: "LoadBalancerTests",
            dependencies: [
                "LoadBalancer", "LoadBalancerContract", "FleetContract", "ChildProcesses", "ServiceRuntime", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings),
    ]
)
