/// Which replica of a service speaks for which key: the gateway's agents, the metrics
/// aggregator's deployments.
///
/// Every replica sees the same inputs, so each could act on every key; only the key's owner does,
/// so two replicas never send the same thing. Ownership is rendezvous hashing over the replicas
/// that are online, as their retained service statuses say: when a replica stops or dies (its
/// last will), only its own keys move, each to the replica that ranks next for it.
package struct ReplicaMembership: Sendable {
    package let me: String
    package private(set) var peers: Set<String> = []

    package init(me: String) {
        self.me = me
    }

    /// The online replicas, this one included, sorted.
    package var replicas: [String] { (peers.union([me])).sorted() }

    package mutating func update(instance: String, online: Bool) {
        guard instance != me else { return }
        if online { peers.insert(instance) } else { peers.remove(instance) }
    }

    package func owner(of agentID: String) -> String {
        var best = me
        var bestScore = Self.score(me, agentID)
        for peer in peers {
            let score = Self.score(peer, agentID)
            if score > bestScore || (score == bestScore && peer < best) {
                best = peer
                bestScore = score
            }
        }
        return best
    }

    package func owns(_ agentID: String) -> Bool { owner(of: agentID) == me }

    /// FNV-1a over "replica NUL agent", finished with a SplitMix64 step so that similar ids spread
    /// evenly. Stable across processes and builds (unlike `Hasher`).
    package static func score(_ replica: String, _ agentID: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in replica.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ 0) &* 0x100_0000_01b3
        for byte in agentID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }
}
