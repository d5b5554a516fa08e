import Synchronization
import Testing

@testable import ServiceRuntime

@Suite("Loop health")
struct LoopHealthTests {
    @Test("a step that does not return fails with StepTimedOut while it is still waiting, although it ignores cancellation")
    func abandonedStep() async throws {
        let health = LoopHealth(stuckAfter: .seconds(60))
        let finished = Atomic<Bool>(false)
        await #expect(throws: StepTimedOut.self) {
            try await health.step("outbox", within: .milliseconds(100)) {
                // A wait that cancellation does not end, like a query on a connection that never answers.
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    Task.detached {
                        try? await Task.sleep(for: .seconds(30))
                        continuation.resume()
                    }
                }
                finished.store(true, ordering: .releasing)
            }
        }
        let awaitedToTheEnd = finished.load(ordering: .acquiring)
        #expect(!awaitedToTheEnd, "the step was awaited to its end instead of given up")
    }

    @Test("a step's value and error come through; only failing longer than stuckAfter makes the loop unready, and a success heals it")
    func readiness() async throws {
        struct Lost: Error {}
        let health = LoopHealth(stuckAfter: .milliseconds(200))
        let check = health.readinessCheck(name: "loops")
        #expect(try await health.step("reports", within: .seconds(1)) { 42 } == 42)
        await #expect(throws: Lost.self) { try await health.step("reports", within: .seconds(1)) { throw Lost() } }
        #expect(check.probe().ready, "one failure is not stuck yet")
        try await Task.sleep(for: .milliseconds(300))
        await #expect(throws: Lost.self) { try await health.step("reports", within: .seconds(1)) { throw Lost() } }
        let stuck = check.probe()
        #expect(!stuck.ready && stuck.detail.contains("reports") && stuck.detail.contains("2 failed"), "\(stuck.detail)")
        _ = try await health.step("reports", within: .seconds(1)) { () }
        #expect(check.probe().ready)
    }

    @Test("cancelling the caller ends the wait at once")
    func cancellation() async throws {
        let waiting = Task {
            try await withAbandonedDeadline(.seconds(30), onTimeout: StepTimedOut(loop: "x", bound: .seconds(30))) {
                try await Task.sleep(for: .seconds(30))
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }
}
