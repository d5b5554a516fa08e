package import ChildProcesses
import Foundation

extension ChildProcess {
    /// Blocks until the process exits or `timeout` seconds pass; for tests that are not async.
    package func waitForExitSync(timeout: Double) throws -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status { return status }
            usleep(20_000)
        }
        return status
    }
}
