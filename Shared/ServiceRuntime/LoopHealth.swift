import Synchronization

/// Whether a service's long-running loops (outbox publisher, report recorder, watchdog) make
/// progress, for `/ready`: the database's probe answering says nothing about a loop whose query
/// never returns.
///
/// Each loop runs its waits on other systems as bounded steps (``step(_:within:_:)``). A step
/// that does not return in time is abandoned and fails, so the loop goes round and tries again
/// on a fresh connection; a loop whose steps have failed (or timed out) for longer than
/// `stuckAfter` makes the service unready until one succeeds.
package final class LoopHealth: Sendable {
    private struct Loop {
        /// When the current run of failed steps began; nil while steps succeed.
        var failingSince: ContinuousClock.Instant?
        var lastError = ""
        var failures = 0
    }

    private let loops = Mutex<[String: Loop]>([:])
    package let stuckAfter: Duration

    package init(stuckAfter: Duration) {
        self.stuckAfter = stuckAfter
    }

    /// Runs one step of `loop`, failing with ``StepTimedOut`` when it has not returned within
    /// `bound`. A step that times out is cancelled and left behind: awaiting a call that does not
    /// return would hang the loop with it. Steps must therefore be safe to run again while an
    /// abandoned one may still finish (every database write of the loops is idempotent).
    package func step<T: Sendable>(
        _ loop: String, within bound: Duration, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        do {
            let value = try await withAbandonedDeadline(bound, onTimeout: StepTimedOut(loop: loop, bound: bound), body)
            succeeded(loop)
            return value
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            failed(loop, error)
            throw error
        }
    }

    private func succeeded(_ loop: String) {
        loops.withLock { $0[loop] = Loop() }
    }

    private func failed(_ loop: String, _ error: any Error) {
        let now = ContinuousClock.now
        loops.withLock { loops in
            var entry = loops[loop] ?? Loop()
            entry.failingSince = entry.failingSince ?? now
            entry.lastError = "\(error)"
            entry.failures += 1
            loops[loop] = entry
        }
    }

    /// Not ready while a loop has failed for longer than ``stuckAfter``, naming the loop, for
    /// how long and its last error.
    package func readinessCheck(name: String) -> ReadinessCheck {
        ReadinessCheck(name: name) { [self] in
            let now = ContinuousClock.now
            let stuck = loops.withLock { loops in
                loops.filter { $0.value.failingSince.map { now - $0 > stuckAfter } ?? false }.sorted { $0.key < $1.key }
            }
            guard !stuck.isEmpty else { return (true, "making progress") }
            let detail = stuck.map { name, loop in
                let seconds = (now - loop.failingSince!).components.seconds
                return "\(name): no step has succeeded for \(seconds) s (\(loop.failures) failed; last: \(loop.lastError))"
            }
            return (false, detail.joined(separator: "; "))
        }
    }
}

/// A loop's step did not return within its bound.
package struct StepTimedOut: Error, CustomStringConvertible {
    package var loop: String
    package var bound: Duration
    package var description: String { "a step of \(loop) did not return within \(bound.components.seconds) s" }
}

/// Runs `operation` in a task of its own and returns its result, or throws `onTimeout()` once
/// `timeout` has passed; the operation is then cancelled but not awaited. Unlike a task group,
/// which waits for every child, this returns on time even when the operation ignores
/// cancellation (a database call whose connection never answers).
package func withAbandonedDeadline<T: Sendable>(
    _ timeout: Duration,
    onTimeout: @autoclosure @escaping @Sendable () -> any Error,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = OnceResult<T>()
    let work = Task { try await operation() }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            outcome.set(continuation)
            Task {
                let result = await work.result
                outcome.resume(with: result)
            }
            Task {
                try? await Task.sleep(for: timeout)
                if outcome.resume(with: .failure(onTimeout())) { work.cancel() }
            }
        }
    } onCancel: {
        work.cancel()
        outcome.resume(with: .failure(CancellationError()))
    }
}

/// A continuation resumed by whichever outcome comes first; a result that arrives before the
/// continuation is stored is kept for it.
private final class OnceResult<T: Sendable>: Sendable {
    private enum State {
        case waiting
        case stored(CheckedContinuation<T, any Error>)
        case early(Result<T, any Error>)
        case done
    }

    private let state = Mutex(State.waiting)

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLock { state in
            switch state {
            case .waiting:
                state = .stored(continuation)
                return nil
            case .early(let result):
                state = .done
                return result
            case .stored, .done:
                preconditionFailure("the continuation is set once")
            }
        }
        if let early { continuation.resume(with: early) }
    }

    /// Resumes with `result` unless another outcome came first; true when this one won.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        let (won, continuation) = state.withLock { state -> (Bool, CheckedContinuation<T, any Error>?) in
            switch state {
            case .waiting:
                state = .early(result)
                return (true, nil)
            case .stored(let continuation):
                state = .done
                return (true, continuation)
            case .early, .done:
                return (false, nil)
            }
        }
        continuation?.resume(with: result)
        return won
    }
}
