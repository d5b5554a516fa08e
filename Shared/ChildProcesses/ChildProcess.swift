package import Foundation
import Synchronization

/// A child process started with `posix_spawn` and reaped with `waitpid`: the edge agent's process
/// runtime and the tests' services and scripts.
///
/// Foundation's `Process` did not notice its children exit inside the test runner (they stayed
/// zombies and `waitUntilExit` never returned), so ModelFleet manages its children directly.
package final class ChildProcess: Sendable {
    package let pid: pid_t
    package let outputFile: URL
    /// Set once the child is reaped (`waitpid` may be called only once for it).
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `executable` with `arguments` and `environment`, stdin from /dev/null, stdout and
    /// stderr appended to `outputFile`. An `executable` without a `/` is looked up in the `PATH`.
    package init(executable: String, arguments: [String], environment: [String: String], outputFile: URL) throws {
        self.outputFile = outputFile
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        // The test runner blocks or ignores some signals, and a spawned child inherits both:
        // reset the mask and every disposition so that SIGTERM means what it says in the child.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result =
            executable.contains("/")
            ? posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            : posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
        self.pid = pid
    }

    /// The exit code (or 128 + signal), or nil while it runs.
    package var status: Int32? {
        exitStatus.withLock { exitStatus in
            if exitStatus == nil {
                var raw: Int32 = 0
                if waitpid(pid, &raw, WNOHANG) == pid {
                    // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
                    let signal = raw & 0x7f
                    exitStatus = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
                }
            }
            return exitStatus
        }
    }

    package var isRunning: Bool { status == nil }

    package func send(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits for the exit; returns its status, or nil if it still runs after `timeout`.
    package func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status { return status }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return status
    }

    /// Everything the process wrote so far.
    package var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    deinit {
        if status == nil {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            waitpid(pid, &raw, 0)
        }
    }
}
