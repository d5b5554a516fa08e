import Synchronization
import Testing

@testable import EdgeAgent

@Suite("Serial queue")
struct SerialQueueTests {
    /// What the agent's reports need: a body that suspends partway (as a report does between its
    /// picture and its publish) is not overtaken by one handed in after it, though that one would
    /// finish sooner.
    @Test("each body runs to its end, awaits included, before the next starts, in the order handed in")
    func order() async {
        let queue = SerialQueue()
        let log = Mutex<[String]>([])
        var tasks: [Task<Void, Never>] = []
        for index in 0..<20 {
            tasks.append(
                queue.enqueue {
                    log.withLock { $0.append("start \(index)") }
                    try? await Task.sleep(for: .milliseconds(20 - index))
                    log.withLock { $0.append("end \(index)") }
                })
        }
        for task in tasks { await task.value }
        #expect(log.withLock { $0 } == (0..<20).flatMap { ["start \($0)", "end \($0)"] })
    }
}
