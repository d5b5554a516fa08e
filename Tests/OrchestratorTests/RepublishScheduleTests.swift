import Testing

@testable import Orchestrator

@Suite("Republishing to agents behind their desired state")
struct RepublishScheduleTests {
    private let start = ContinuousClock.now
    private func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }
    private func behind(_ agents: [String: Int64]) -> [PostgresOperationStore.AgentBehind] {
        agents.sorted { $0.key < $1.key }.map { PostgresOperationStore.AgentBehind(agentID: $0.key, generation: $0.value) }
    }

    @Test("an agent found behind is due at once, then after 5, 10, 20 … s, at most 5 min apart")
    func backoff() {
        var schedule = RepublishSchedule()
        let agent = behind(["edge-1": 2])
        var sent: [Int] = []
        for second in 0...1_000 where !schedule.due(agent, at: at(second)).isEmpty {
            sent.append(second)
        }
        #expect(sent == [0, 5, 15, 35, 75, 155, 315, 615, 915])
    }

    @Test("a new generation starts over; an agent no longer behind is forgotten")
    func newGeneration() {
        var schedule = RepublishSchedule()
        #expect(schedule.due(behind(["edge-1": 2, "edge-2": 4]), at: at(0)) == ["edge-1", "edge-2"])
        #expect(schedule.due(behind(["edge-1": 2, "edge-2": 4]), at: at(1)).isEmpty, "both wait their backoff")
        #expect(schedule.due(behind(["edge-1": 3, "edge-2": 4]), at: at(2)) == ["edge-1"], "edge-1 was sent a newer document")
        #expect(schedule.due(behind(["edge-1": 3]), at: at(3)).isEmpty)
        #expect(schedule.count == 1, "edge-2 reported and is forgotten")
        #expect(schedule.due(behind(["edge-1": 3, "edge-2": 4]), at: at(4)) == ["edge-2"], "behind again: found anew")
    }

    @Test("an agent that comes back online is due at once, not after its backoff")
    func cameOnline() {
        var schedule = RepublishSchedule()
        let agent = behind(["edge-1": 2])
        #expect(schedule.due(agent, at: at(0)) == ["edge-1"])
        #expect(schedule.due(agent, at: at(5)) == ["edge-1"])
        #expect(schedule.due(agent, at: at(6)).isEmpty)
        schedule.cameOnline("edge-1")
        schedule.cameOnline("edge-9")  // not behind: nothing to do
        #expect(schedule.due(agent, at: at(7)) == ["edge-1"])
        #expect(schedule.due(agent, at: at(8)).isEmpty, "and then its backoff again")
    }
}
