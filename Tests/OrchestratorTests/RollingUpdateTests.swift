import Testing

@testable import Orchestrator

/// The rolling update's budget and steps (``RollingUpdate``), as Kubernetes' Deployment
/// controller takes them, without a database.
@Suite("Rolling update")
struct RollingUpdateTests {
    private func roll(_ replicas: Int, surge: Int, unavailable: Int) -> RollingUpdate {
        var strategy = DeploymentSpec.UpdateStrategy()
        strategy.maxSurgePercent = surge
        strategy.maxUnavailablePercent = unavailable
        return RollingUpdate(replicas: replicas, strategy: strategy)
    }

    @Test(
        "the surge rounds up, the unavailable count down, and a budget of neither becomes one unavailable",
        arguments: [
            (4, 25, 0, 1, 0), (10, 25, 0, 3, 0), (1, 25, 0, 1, 0), (10, 0, 25, 0, 2), (3, 0, 25, 0, 1), (10, 50, 50, 5, 5), (0, 25, 0, 0, 1),
        ])
    func budget(replicas: Int, surge: Int, unavailable: Int, maxSurge: Int, maxUnavailable: Int) {
        let roll = roll(replicas, surge: surge, unavailable: unavailable)
        #expect(roll.maxSurge == maxSurge && roll.maxUnavailable == maxUnavailable)
    }

    /// Runs a roll of `replicas` to the end, every new instance becoming ready one step after it
    /// starts. Returns the most instances at once and the fewest ready at once.
    private func simulate(_ roll: RollingUpdate) -> (steps: Int, most: Int, fewestReady: Int) {
        var counts = RollingUpdate.Counts(oldReady: roll.replicas)
        var (steps, most, fewestReady) = (0, counts.total, counts.oldReady)
        while counts.oldReady + counts.oldNotReady > 0 || counts.newNotReady > 0 {
            counts.newReady += counts.newNotReady
            counts.newNotReady = 0
            let step = roll.step(counts)
            counts.oldNotReady -= step.removeOldNotReady
            counts.oldReady -= step.removeOldReady
            fewestReady = min(fewestReady, counts.oldReady + counts.newReady)
            counts.newNotReady += step.add
            most = max(most, counts.total)
            steps += 1
            if steps > 100 { break }
        }
        return (steps, most, fewestReady)
    }

    @Test("a whole roll keeps within the surge and the unavailable budget, and ends with every instance new")
    func wholeRoll() {
        for (replicas, surge, unavailable) in [(3, 25, 0), (10, 25, 0), (10, 0, 25), (4, 50, 50), (1, 25, 0), (1, 0, 1)] {
            let roll = roll(replicas, surge: surge, unavailable: unavailable)
            let (steps, most, fewestReady) = simulate(roll)
            #expect(steps < 100, "\(replicas) \(surge) \(unavailable): the roll ends")
            #expect(most <= replicas + roll.maxSurge, "\(replicas) \(surge) \(unavailable): \(most) at once")
            #expect(fewestReady >= replicas - roll.maxUnavailable, "\(replicas) \(surge) \(unavailable): \(fewestReady) ready at once")
        }
        // 10 replicas, surge 3: three new at a time, so four steps of starting and one of finishing.
        #expect(simulate(roll(10, surge: 25, unavailable: 0)).steps == 5)
    }

    @Test("old instances that serve nothing go first; a new one that is not ready holds the ready old ones back")
    func steps() {
        let roll = roll(3, surge: 25, unavailable: 0)
        #expect(roll.step(.init(oldReady: 3)) == .init(add: 1))
        #expect(roll.step(.init(oldReady: 3, newNotReady: 1)) == .init(), "waits for the new one")
        #expect(roll.step(.init(oldReady: 3, newReady: 1)) == .init(removeOldReady: 1, add: 1))
        // A crashed old instance is replaced as soon as a new one is ready, not before.
        #expect(roll.step(.init(oldReady: 2, oldNotReady: 1)) == .init(add: 1))
        #expect(roll.step(.init(oldReady: 2, oldNotReady: 1, newReady: 1)) == .init(removeOldNotReady: 1, add: 1))
        // After a rollback: the stalled revision's not-ready instance is surplus beside a full set.
        #expect(roll.step(.init(oldNotReady: 1, newReady: 3)) == .init(removeOldNotReady: 1))
        // With room to be unavailable and no surge, an old one goes first and its successor follows.
        #expect(self.roll(3, surge: 0, unavailable: 34).step(.init(oldReady: 3)) == .init(removeOldReady: 1, add: 1))
    }
}
