package import ChildProcesses
import Foundation

/// An HTTP server of one artifact that sends it slowly, in ten pieces over `seconds`, as a large
/// model downloads: for tests of what goes on meanwhile. Python's `http.server`, started with
/// `python3` from the PATH; it says its port and the artifact's sha256 on its first line.
package final class SlowArtifactServer: Sendable {
    package let process: ChildProcess
    package let url: String
    package let sha256: String
    package let size: Int

    package init(size: Int, seconds: Double) async throws {
        let environment = try TestEnvironment.current()
        let output = environment.scratch.appendingPathComponent("slow-artifact-\(UUID().uuidString.prefix(8)).log")
        let child = try ChildProcess(
            executable: "/usr/bin/env", arguments: ["python3", "-c", Self.script, "\(size)", "\(seconds)"],
            environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], outputFile: output)
        var first: [Substring] = []
        _ = await eventually(timeout: .seconds(10)) {
            first = child.output.split(separator: "\n").first?.split(separator: " ") ?? []
            return first.count == 2 || !child.isRunning
        }
        guard first.count == 2, let port = Int(first[0]) else {
            child.send(SIGKILL)
            throw ServiceDidNotStart(name: "slow artifact server", output: child.output)
        }
        process = child
        url = "http://127.0.0.1:\(port)/model.onnx"
        sha256 = String(first[1])
        self.size = size
    }

    package func stop() { process.send(SIGKILL) }

    private static let script = """
        import hashlib, http.server, sys, time
        size, seconds = int(sys.argv[1]), float(sys.argv[2])
        data = bytes(i % 251 for i in range(size))
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                step = -(-size // 10)
                for start in range(0, size, step):
                    time.sleep(seconds / 10)
                    self.wfile.write(data[start:start + step])
                    self.wfile.flush()
            def log_message(self, *arguments):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print(server.server_address[1], hashlib.sha256(data).hexdigest(), flush=True)
        server.serve_forever()
        """
}
