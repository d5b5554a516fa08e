package import FleetContract
package import Foundation

/// The messages an edge agent publishes, as `docs/device-protocol.md` and the schemas in
/// `Schemas/` define them. The gateway validates the JSON against the schema first and decodes
/// these types only from documents that passed.
package enum AgentMessage {
    /// `agents/<id>/presence`, retained: the agent's own word on whether it is connected.
    package struct Presence: ContractPayload, Equatable {
        package static let messageType = "agent.presence"

        package enum State: String, ClosedSet {
            case online
            case offline
        }

        package enum Reason: String, ClosedSet {
            /// Published by the agent right after each connect.
            case connected
            /// Published by the agent before a clean disconnect.
            case stopping
            /// The agent's last will, published by the broker when the agent vanished.
            case connectionLost = "connection_lost"
        }

        package var agentID: String
        package var state: State
        package var reason: Reason

        package init(agentID: String, state: State, reason: Reason) {
            self.agentID = agentID
            self.state = state
            self.reason = reason
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case state, reason
        }
    }

    /// `agents/<id>/hello`, after each connect: where the agent runs, what it can do, its devices.
    package struct Hello: ContractPayload, Equatable {
        package static let messageType = "agent.hello"

        package var agentID: String
        package var site: AgentHello.Site
        package var serverName: String
        package var agentVersion: String
        package var capacity: AgentHello.Capacity
        package var supportsPipelines: Bool
        package var devices: [AgentHello.Device]
        /// The generation of the desired state the agent has applied; 0 when none.
        package var appliedGeneration: Int

        package init(
            agentID: String, site: AgentHello.Site, serverName: String, agentVersion: String, capacity: AgentHello.Capacity,
            supportsPipelines: Bool, devices: [AgentHello.Device], appliedGeneration: Int
        ) {
            self.agentID = agentID
            self.site = site
            self.serverName = serverName
            self.agentVersion = agentVersion
            self.capacity = capacity
            self.supportsPipelines = supportsPipelines
            self.devices = devices
            self.appliedGeneration = appliedGeneration
        }

        /// The internal event the gateway forwards to the registry.
        package func forwarded(observedAt: Date) -> AgentHello {
            AgentHello(
                agentID: agentID, site: site, serverName: serverName, agentVersion: agentVersion, capacity: capacity,
                supportsPipelines: supportsPipelines, devices: devices, observedAt: observedAt
            )
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case site
            case serverName = "server_name"
            case agentVersion = "agent_version"
            case capacity
            case supportsPipelines = "supports_pipelines"
            case devices
            case appliedGeneration = "applied_generation"
        }
    }

    /// `agents/<id>/heartbeat`, every few seconds.
    package struct Heartbeat: ContractPayload, Equatable {
        package static let messageType = "agent.heartbeat"

        package var agentID: String
        package var uptimeSeconds: Double
        package var appliedGeneration: Int

        package init(agentID: String, uptimeSeconds: Double, appliedGeneration: Int) {
            self.agentID = agentID
            self.uptimeSeconds = uptimeSeconds
            self.appliedGeneration = appliedGeneration
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case uptimeSeconds = "uptime_seconds"
            case appliedGeneration = "applied_generation"
        }
    }

    /// `agents/<id>/telemetry`, every few seconds: the host and each running pipeline over the
    /// last interval.
    package struct Telemetry: ContractPayload, Equatable {
        package static let messageType = "agent.telemetry"

        package struct Host: Codable, Sendable, Equatable {
            package var cpuPercent: Double
            package var memoryUsedBytes: Int64
            package var gpuPercent: Double?

            package init(cpuPercent: Double, memoryUsedBytes: Int64, gpuPercent: Double? = nil) {
                self.cpuPercent = cpuPercent
                self.memoryUsedBytes = memoryUsedBytes
                self.gpuPercent = gpuPercent
            }

            private enum CodingKeys: String, CodingKey {
                case cpuPercent = "cpu_percent"
                case memoryUsedBytes = "memory_used_bytes"
                case gpuPercent = "gpu_percent"
            }
        }

        package struct Latency: Codable, Sendable, Equatable {
            package var p50: Double
            package var p95: Double
            package var p99: Double

            package init(p50: Double, p95: Double, p99: Double) {
                self.p50 = p50
                self.p95 = p95
                self.p99 = p99
            }
        }

        package struct Pipeline: Codable, Sendable, Equatable {
            package var deviceKey: String
            package var pipelineID: String
            package var frames: Int
            package var detections: Int
            package var errors: Int
            package var latencyMs: Latency

            package init(deviceKey: String, pipelineID: String, frames: Int, detections: Int, errors: Int, latencyMs: Latency) {
                self.deviceKey = deviceKey
                self.pipelineID = pipelineID
                self.frames = frames
                self.detections = detections
                self.errors = errors
                self.latencyMs = latencyMs
            }

            private enum CodingKeys: String, CodingKey {
                case deviceKey = "device_key"
                case pipelineID = "pipeline_id"
                case frames, detections, errors
                case latencyMs = "latency_ms"
            }
        }

        /// One deployment instance's figures over the interval: what the metrics aggregator adds up.
        package struct Instance: Codable, Sendable, Equatable {
            package var instanceID: String
            package var deployment: String
            package var version: String
            /// Whether the instance passed its health check at the end of the interval.
            package var ready: Bool
            /// Requests answered in the interval; nil where the agent does not see them (the
            /// process runtime serves its port itself).
            package var requests: Int?
            /// Of ``requests``, those answered 5xx or failed.
            package var errors: Int?
            /// The requests' latencies in microseconds: HdrHistogram V2 compressed, base64, 3
            /// significant digits, lowest discernible value 1 (absent when no request was answered).
            package var latencyUs: String?
            /// Requests in progress on average over the interval (time-weighted, so a request
            /// running through half of it counts one half); nil where the agent does not see them.
            package var inFlight: Double?
            /// Cores used on average over the interval.
            package var cpuCores: Double?
            /// The cores it asked for (its deployment's resources).
            package var cpuRequestedCores: Double?
            /// Resident memory at the end of the interval.
            package var memoryBytes: Int64?
            /// The memory it asked for.
            package var memoryRequestedBytes: Int64?
            /// GPU use over the interval, as a fraction of the instance's GPUs (0 to 1).
            package var gpuUtilization: Double?

            package init(
                instanceID: String, deployment: String, version: String, ready: Bool, requests: Int?, errors: Int?, latencyUs: String?,
                cpuCores: Double?, cpuRequestedCores: Double?, memoryBytes: Int64?, memoryRequestedBytes: Int64?, gpuUtilization: Double? = nil,
                inFlight: Double? = nil
            ) {
                self.instanceID = instanceID
                self.deployment = deployment
                self.version = version
                self.ready = ready
                self.requests = requests
                self.errors = errors
                self.latencyUs = latencyUs
                self.inFlight = inFlight
                self.cpuCores = cpuCores
                self.cpuRequestedCores = cpuRequestedCores
                self.memoryBytes = memoryBytes
                self.memoryRequestedBytes = memoryRequestedBytes
                self.gpuUtilization = gpuUtilization
            }

            private enum CodingKeys: String, CodingKey {
                case instanceID = "instance_id"
                case deployment, version, ready, requests, errors
                case latencyUs = "latency_us"
                case inFlight = "in_flight"
                case cpuCores = "cpu_cores"
                case cpuRequestedCores = "cpu_requested_cores"
                case memoryBytes = "memory_bytes"
                case memoryRequestedBytes = "memory_requested_bytes"
                case gpuUtilization = "gpu_utilization"
            }
        }

        package var agentID: String
        /// The agent's site (its configuration's `site_id`), so that figures add up per site.
        package var siteID: String?
        package var intervalSeconds: Double
        package var host: Host
        package var pipelines: [Pipeline]
        /// Deployment instances' figures: in the one-second messages of an agent that runs instances.
        package var instances: [Instance]?

        package init(
            agentID: String, siteID: String? = nil, intervalSeconds: Double, host: Host, pipelines: [Pipeline], instances: [Instance]? = nil
        ) {
            self.agentID = agentID
            self.siteID = siteID
            self.intervalSeconds = intervalSeconds
            self.host = host
            self.pipelines = pipelines
            self.instances = instances
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case siteID = "site_id"
            case intervalSeconds = "interval_seconds"
            case host, pipelines, instances
        }
    }

    /// `agents/<id>/report`, after each apply and after any pipeline's state changes: every
    /// pipeline of the applied generation, and those it removed.
    package struct Report: ContractPayload, Equatable {
        package static let messageType = "agent.report"

        package enum PipelineState: String, ClosedSet {
            case running
            case failed
            case removed
        }

        package struct PipelineReport: Codable, Sendable, Equatable {
            package var pipelineID: String
            package var state: PipelineState
            /// Why it failed; required when `state` is `failed`.
            package var reason: String?

            package init(pipelineID: String, state: PipelineState, reason: String? = nil) {
                self.pipelineID = pipelineID
                self.state = state
                self.reason = reason
            }

            private enum CodingKeys: String, CodingKey {
                case pipelineID = "pipeline_id"
                case state, reason
            }
        }

        package struct DeviceReport: Codable, Sendable, Equatable {
            package var deviceKey: String
            package var pipelines: [PipelineReport]

            package init(deviceKey: String, pipelines: [PipelineReport]) {
                self.deviceKey = deviceKey
                self.pipelines = pipelines
            }

            private enum CodingKeys: String, CodingKey {
                case deviceKey = "device_key"
                case pipelines
            }
        }

        /// How far an apply under way is: an in-progress report carries it, and settles nothing.
        package struct Applying: Codable, Sendable, Equatable {
            package var bytesFetched: Int64
            /// The size of the generation's downloads, when every server of them said it.
            package var bytesTotal: Int64?

            package init(bytesFetched: Int64, bytesTotal: Int64?) {
                self.bytesFetched = bytesFetched
                self.bytesTotal = bytesTotal
            }

            private enum CodingKeys: String, CodingKey {
                case bytesFetched = "bytes_fetched"
                case bytesTotal = "bytes_total"
            }
        }

        package enum InstanceState: String, ClosedSet {
            /// Started, not answering its health check yet.
            case starting
            /// Answering its health check.
            case ready
            /// Could not start, or crashed (restarted with backoff); `reason` says why.
            case failed
            /// Shut down: no longer in the desired state.
            case stopped
        }

        package struct InstanceReport: Codable, Sendable, Equatable {
            package var instanceID: String
            package var state: InstanceState
            package var reason: String?
            /// `host:port`, once it listens.
            package var address: String?
            package var version: String
            package var restarts: Int
            /// The `spec_revision` of the entry it runs; nil from agents that do not say.
            package var specRevision: Int?

            package init(
                instanceID: String, state: InstanceState, reason: String? = nil, address: String? = nil, version: String, restarts: Int = 0,
                specRevision: Int? = nil
            ) {
                self.instanceID = instanceID
                self.state = state
                self.reason = reason
                self.address = address
                self.version = version
                self.restarts = restarts
                self.specRevision = specRevision
            }

            private enum CodingKeys: String, CodingKey {
                case instanceID = "instance_id"
                case state, reason, address, version, restarts
                case specRevision = "spec_revision"
            }
        }

        package var agentID: String
        package var generation: Int
        /// Set in an in-progress report: `generation` is being applied, not applied yet.
        package var applying: Applying?
        package var devices: [DeviceReport]
        /// The deployment instances, for an agent that runs any (or just stopped its last).
        package var instances: [InstanceReport]?

        package init(agentID: String, generation: Int, applying: Applying? = nil, devices: [DeviceReport], instances: [InstanceReport]? = nil) {
            self.agentID = agentID
            self.generation = generation
            self.applying = applying
            self.devices = devices
            self.instances = instances
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case generation, applying, devices, instances
        }
    }
}

extension AgentMessage {
    /// `agents/<id>/request`, from the gateway: a question the agent answers with a ``Response``
    /// of the same `requestID`.
    package struct Request: ContractPayload, Equatable {
        package static let messageType = "agent.request"

        package enum Kind: String, ClosedSet {
            /// The last `tail` lines of the output of deployment instance `instanceID`.
            case instanceLogs = "instance_logs"
        }

        package var agentID: String
        package var requestID: UUID
        package var kind: Kind
        package var instanceID: String
        package var tail: Int

        package init(agentID: String, requestID: UUID, kind: Kind, instanceID: String, tail: Int) {
            self.agentID = agentID
            self.requestID = requestID
            self.kind = kind
            self.instanceID = instanceID
            self.tail = tail
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case requestID = "request_id"
            case instanceID = "instance_id"
            case kind, tail
        }
    }

    /// `agents/<id>/response`: the answer to a ``Request``: `lines`, or `error`.
    package struct Response: ContractPayload, Equatable {
        package static let messageType = "agent.response"

        /// The longest line a response carries; longer ones are cut.
        package static let maximumLineLength = 2_048

        package var agentID: String
        package var requestID: UUID
        package var lines: [String]?
        package var error: String?

        package init(agentID: String, requestID: UUID, lines: [String]? = nil, error: String? = nil) {
            self.agentID = agentID
            self.requestID = requestID
            self.lines = lines
            self.error = error
        }

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case requestID = "request_id"
            case lines, error
        }
    }
}

/// `agents/<id>/desired`, retained: everything the agent should run, as one document. The agent
/// applies it whole and idempotently; `generation` only grows, and a document not newer than the
/// one applied is ignored.
package struct DesiredState: ContractPayload, Equatable {
    package static let messageType = "agent.desired-state"

    /// A pre- or post-processor of a stage: a name the runtime knows (`resize`, `nms`, `tracker`)
    /// and its settings.
    package struct Processor: Codable, Sendable, Hashable {
        package var name: String
        package var settings: [String: JSONValue]

        package init(name: String, settings: [String: JSONValue] = [:]) {
            self.name = name
            self.settings = settings
        }
    }

    /// One model of a pipeline, with where to fetch it and how to run it.
    package struct Stage: Codable, Sendable, Hashable {
        package var modelID: UUID
        package var modelName: String
        package var version: String
        package var artifactURI: String
        package var sha256: String
        package var settings: [String: JSONValue]
        package var preProcessors: [Processor]
        package var postProcessors: [Processor]

        package init(
            modelID: UUID, modelName: String, version: String, artifactURI: String, sha256: String, settings: [String: JSONValue] = [:],
            preProcessors: [Processor] = [], postProcessors: [Processor] = []
        ) {
            self.modelID = modelID
            self.modelName = modelName
            self.version = version
            self.artifactURI = artifactURI
            self.sha256 = sha256
            self.settings = settings
            self.preProcessors = preProcessors
            self.postProcessors = postProcessors
        }

        private enum CodingKeys: String, CodingKey {
            case modelID = "model_id"
            case modelName = "model_name"
            case version
            case artifactURI = "artifact_uri"
            case sha256, settings
            case preProcessors = "pre_processors"
            case postProcessors = "post_processors"
        }
    }

    /// An ordered chain of stages on one device; `id` is stable across generations.
    package struct Pipeline: Codable, Sendable, Hashable {
        package var id: String
        package var name: String
        package var stages: [Stage]

        package init(id: String, name: String, stages: [Stage]) {
            self.id = id
            self.name = name
            self.stages = stages
        }
    }

    package struct DeviceAssignment: Codable, Sendable, Equatable {
        package var deviceKey: String
        package var pipelines: [Pipeline]

        package init(deviceKey: String, pipelines: [Pipeline]) {
            self.deviceKey = deviceKey
            self.pipelines = pipelines
        }

        private enum CodingKeys: String, CodingKey {
            case deviceKey = "device_key"
            case pipelines
        }
    }

    /// One instance of a deployment: an HTTP model server the agent runs on a port it chooses.
    /// An instance whose entry changes (its environment, resources or runtime) is restarted.
    package struct Instance: Codable, Sendable, Hashable {
        package struct Resources: Codable, Sendable, Hashable {
            package var cpuCores: Double
            package var memoryBytes: Int64
            package var gpuCount: Int
            package var gpuType: String?

            package init(cpuCores: Double, memoryBytes: Int64, gpuCount: Int, gpuType: String?) {
                self.cpuCores = cpuCores
                self.memoryBytes = memoryBytes
                self.gpuCount = gpuCount
                self.gpuType = gpuType
            }

            private enum CodingKeys: String, CodingKey {
                case cpuCores = "cpu_cores"
                case memoryBytes = "memory_bytes"
                case gpuCount = "gpu_count"
                case gpuType = "gpu_type"
            }
        }

        package struct Runtime: Codable, Sendable, Hashable {
            package enum Kind: String, Codable, Sendable {
                /// The agent's own HTTP model server.
                case builtin
                /// `command`, started with its port in `PORT`.
                case process
            }

            package var kind: Kind
            package var command: [String]?

            package init(kind: Kind, command: [String]? = nil) {
                self.kind = kind
                self.command = command
            }
        }

        package var instanceID: String
        package var deployment: String
        package var revision: Int
        /// The deployment revision whose spec this entry carries; reported back by the agent.
        package var specRevision: Int
        package var modelID: UUID
        package var modelName: String
        package var version: String
        package var artifactURI: String
        package var sha256: String
        package var resources: Resources
        package var env: [String: String]
        package var runtime: Runtime
        package var healthCheckPath: String

        package init(
            instanceID: String, deployment: String, revision: Int, specRevision: Int, modelID: UUID, modelName: String, version: String,
            artifactURI: String, sha256: String, resources: Resources, env: [String: String], runtime: Runtime, healthCheckPath: String
        ) {
            self.instanceID = instanceID
            self.deployment = deployment
            self.revision = revision
            self.specRevision = specRevision
            self.modelID = modelID
            self.modelName = modelName
            self.version = version
            self.artifactURI = artifactURI
            self.sha256 = sha256
            self.resources = resources
            self.env = env
            self.runtime = runtime
            self.healthCheckPath = healthCheckPath
        }

        private enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case deployment, revision
            case specRevision = "spec_revision"
            case modelID = "model_id"
            case modelName = "model_name"
            case version
            case artifactURI = "artifact_uri"
            case sha256, resources, env, runtime
            case healthCheckPath = "health_check_path"
        }
    }

    package var agentID: String
    package var generation: Int
    /// Every device that runs something; a device of the agent that is not listed runs nothing.
    package var devices: [DeviceAssignment]
    /// The deployment instances of this server (`deployments` in the document); nil or empty: none.
    package var instances: [Instance]?

    package init(agentID: String, generation: Int, devices: [DeviceAssignment], instances: [Instance]? = nil) {
        self.agentID = agentID
        self.generation = generation
        self.devices = devices
        self.instances = instances
    }

    private enum CodingKeys: String, CodingKey {
        case agentID = "agent_id"
        case generation, devices
        case instances = "deployments"
    }
}
