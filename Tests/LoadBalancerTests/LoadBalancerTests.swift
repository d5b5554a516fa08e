import ChildProcesses
import FleetContract
import Foundation
import Testing

@testable import LoadBalancer

@Suite("HAProxy configuration")
struct HAProxyConfigTests {
    static func view(
        _ name: String, _ state: LoadBalancerView.State = .serving, algorithm: LoadBalancerView.Algorithm = .roundRobin, sticky: Bool = false,
        servers: [LoadBalancerView.Server] = []
    ) -> LoadBalancerView {
        LoadBalancerView(
            deployment: name, state: state, algorithm: algorithm, healthCheckPath: "/healthz", healthCheckIntervalSeconds: 2, stickySessions: sticky,
            servers: servers)
    }

    static let servers = [
        LoadBalancerView.Server(instanceID: "people-api-0a1b2", address: "127.0.0.1:41001", weight: 100, version: "1.0.0"),
        LoadBalancerView.Server(instanceID: "people-api-0a1b3", address: "127.0.0.1:41002", weight: 300, version: "1.0.0"),
    ]

    @Test("each algorithm, health check, stickiness and state becomes its directives; every answer rule comes before every backend rule")
    func render() throws {
        let text = HAProxyConfig.render(
            [
                Self.view("people-api", algorithm: .ipHash, sticky: true, servers: Self.servers), Self.view("cars", algorithm: .leastConnections),
                Self.view("old", .stopped), Self.view("quiet", .disabled),
            ], settings: HAProxyConfig.Settings(directory: "/tmp/lb"))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains("balance source") && lines.contains("hash-type consistent") && lines.contains("balance leastconn"))
        #expect(lines.contains("option httpchk GET /healthz"))
        #expect(lines.contains("server people-api-0a1b2 127.0.0.1:41001 weight 100 check inter 2s rise 2 fall 3"))
        #expect(lines.contains("server people-api-0a1b3 127.0.0.1:41002 weight 256 check inter 2s rise 2 fall 3"), "weights stop at 256")
        #expect(lines.contains("cookie MF_people_api insert indirect nocache dynamic") && lines.contains("dynamic-cookie-key modelfleet"))
        #expect(!text.contains("backend d_old") && !text.contains("backend d_quiet"), "stopped and disabled deployments have no backend")
        let frontend = lines.drop { $0 != "frontend deployments" }.prefix { $0 != "" }
        let lastAnswer = try #require(frontend.lastIndex { $0.hasPrefix("http-request return") })
        let firstRoute = try #require(frontend.firstIndex { $0.hasPrefix("use_backend") })
        #expect(lastAnswer < firstRoute, "HAProxy runs http-request rules first whatever their place: they are written first")
        #expect(text.contains(#"deployment 'old' is stopped"#) && text.contains("status 503"))
        #expect(!text.contains("nbthread"), "HAProxy's own thread count unless one is set")
    }

    @Test("HAProxy itself accepts the configuration (haproxy -c)", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/haproxy")))
    func haproxyAccepts() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lb-config-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try HAProxyConfig.noInstanceAnswer.write(to: directory.appendingPathComponent("no-instance.http"), atomically: true, encoding: .utf8)
        try "1\n".write(to: directory.appendingPathComponent("server-state"), atomically: true, encoding: .utf8)
        let file = directory.appendingPathComponent("haproxy.cfg")
        var settings = HAProxyConfig.Settings(directory: directory.path)
        settings.threads = 1
        let text = HAProxyConfig.render(
            [Self.view("people-api", algorithm: .ipHash, sticky: true, servers: Self.servers), Self.view("old", .stopped)], settings: settings)
        #expect(text.contains("\n    nbthread 1\n"))
        try text.write(to: file, atomically: true, encoding: .utf8)
        let checker = try ChildProcess(
            executable: "/usr/sbin/haproxy", arguments: ["-c", "-f", file.path], environment: [:],
            outputFile: directory.appendingPathComponent("check.log"))
        let status = await checker.waitForExit(timeout: .seconds(30))
        #expect(status == 0, "\(checker.output)")
        #expect(!checker.output.contains("WARNING"), "\(checker.output)")
    }

    @Test("only IPv4 host:port addresses and plain instance ids reach the configuration")
    func acceptable() {
        let good = LoadBalancerView.Server(instanceID: "a-1", address: "10.0.0.7:8080", weight: 1, version: "1")
        #expect(Balancer.acceptable(good))
        for address in ["10.0.0.7", "10.0.0.7:0", "10.0.0.7:70000", "host:80", "10.0.0.256:80", "1.2.3:80", "10.0.0.7:80 backup"] {
            #expect(!Balancer.acceptable(.init(instanceID: "a-1", address: address, weight: 1, version: "1")), "\(address)")
        }
        #expect(!Balancer.acceptable(.init(instanceID: "a 1", address: "10.0.0.7:80", weight: 1, version: "1")))
        #expect(!Balancer.acceptable(.init(instanceID: "a\n1", address: "10.0.0.7:80", weight: 1, version: "1")))
    }

    @Test("show stat's CSV becomes per-deployment and per-server figures; other proxies are left out")
    func stats() {
        let csv = """
            # pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot
            deployments,FRONTEND,,,1,5,,120,,,,,,,,,,OPEN,,,,,,,,,1,2,0,,,,0,1,0,9,,,,0,118,0,2,0,0,,1,9,120
            d_people-api,people-api-0a1b2,0,0,1,3,,70,,,,,,,,,,UP,100,1,0,0,0,5,0,,1,3,1,,70,,2,1,,6,L7OK,200,1,0,69,0,0,1,0,,,,
            d_people-api,people-api-0a1b3,0,0,0,2,,50,,,,,,,,,,DOWN,100,1,0,3,1,2,4,,1,3,2,,50,,2,0,,4,L7STS,503,1,0,48,0,0,2,0,,,,
            d_people-api,BACKEND,0,0,1,5,,120,,,,,,,,,,UP,100,1,0,,0,5,0,,1,3,0,,120,,1,1,,9,,,,0,117,0,0,3,0,,,,120

            """
        let figures = HAProxyStats.figures(HAProxyStats.parse(csv), replica: "lb-1")
        #expect(figures.replica == "lb-1" && figures.deployments.map(\.deployment) == ["people-api"])
        let deployment = figures.deployments[0]
        #expect(deployment.requestsTotal == 120 && deployment.responses5xxTotal == 3 && deployment.activeConnections == 1)
        #expect(deployment.servers.map(\.instanceID) == ["people-api-0a1b2", "people-api-0a1b3"])
        #expect(deployment.servers.map(\.status) == ["UP", "DOWN"] && deployment.servers.map(\.requestsTotal) == [70, 50])
        #expect(HAProxyStats.parse("not csv").isEmpty)
    }
}
