//! How the leader decides that a node is down, from several signals: its
//! dispatcher heartbeats, its assignments long-poll, and what the gossip
//! group (SWIM) says of it.
//!
//! Heartbeats alone are slow: a node is down only after three missed periods
//! (15 s with Swarm's 5 s period). Gossip alone is fast (a crashed member is
//! down within about a second and a half) but it is one signal, and a
//! datagram path that hiccups (a loaded host, a firewall on UDP) makes SWIM
//! declare a live member down. Rescheduling a node's tasks on that alone
//! would be the "reschedule storm" the issue forbids. So [`judge`] marks a
//! node down when
//!
//! - its heartbeat grace expired (as Swarm does), or
//! - gossip says it is down **and** a second, independent signal agrees: the
//!   node has no assignments long-poll open at this dispatcher (a killed
//!   process closes its TCP connection, so its gRPC stream ends at once; a
//!   live agent keeps one open at all times and reopens it within
//!   milliseconds; one never opened here counts after a heartbeat period,
//!   the time a live agent has to find a new leader), or its heartbeat is
//!   late by half a period (a hung or
//!   unplugged machine, whose TCP connection stays open; an agent sleeps a
//!   period between heartbeats, so one period exactly is the normal gap).
//!
//! Suspicion alone never marks a node down: it only notes it in the node's
//! status message (still ready), as does a gossip verdict that the
//! dispatcher contradicts.
//!
//! The manager does not run gossip itself (it must not depend on the agent):
//! the node's wiring bridges its gossip member's view into a [`GossipView`].

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// A node as the gossip group sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GossipState {
    Alive,
    /// A member failed to get an answer from it; it may still refute.
    Suspect,
    /// Confirmed dead by the group, or left it.
    Down,
}

/// Node id → its gossip state, as this manager's gossip member sees it now.
/// Nodes gossip does not know (not started yet, another version) are absent.
pub type GossipView = watch::Receiver<BTreeMap<String, GossipState>>;

/// A heartbeat grace of this many periods marks a node down (Swarm's).
pub const MISSED_HEARTBEATS: u32 = 3;

/// How long no assignments long-poll of a node may be open before that
/// counts as a signal. A live agent's stream moves from one poll to the
/// next in microseconds; this leaves room for a loaded host.
pub const STREAM_GAP: Duration = Duration::from_millis(500);

/// The status message of a node marked down by its heartbeat grace alone.
pub const HEARTBEAT_FAILURE: &str = "heartbeat failure";

/// Everything [`judge`] looks at, about one node, at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signals {
    /// Since the node's last heartbeat (or registration, or since this
    /// dispatcher started tracking it).
    pub since_heartbeat: Duration,
    pub heartbeat_period: Duration,
    /// What gossip says; `None` when gossip does not know the node.
    pub gossip: Option<GossipState>,
    pub stream: Stream,
}

/// The node's assignments long-polls at this dispatcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// One is open.
    Open,
    /// None is open; the last one ended this long ago.
    ClosedFor(Duration),
    /// None was seen since this dispatcher started tracking the node (it
    /// became the leader, or the node registered) this long ago.
    NeverSeenFor(Duration),
}

/// What the dispatcher makes of a node's signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    /// Still ready (its tasks stay), with a status message saying what is
    /// amiss, for `node ls` and the logs.
    Suspect(String),
    /// Marked down (its tasks are rescheduled); the message names the
    /// signals that decided it.
    Down(String),
}

/// The liveness rule (see the module's comment). Pure: tested with a table.
pub fn judge(s: &Signals) -> Verdict {
    let period = s.heartbeat_period;
    if s.since_heartbeat > period * MISSED_HEARTBEATS {
        return Verdict::Down(HEARTBEAT_FAILURE.into());
    }
    let stream_closed = match s.stream {
        Stream::Open => None,
        Stream::ClosedFor(d) => (d >= STREAM_GAP).then_some("assignments stream closed"),
        Stream::NeverSeenFor(d) => (d >= period).then_some("no assignments stream"),
    };
    let heartbeat_late = s.since_heartbeat > period + period / 2;
    match s.gossip {
        Some(GossipState::Down) => {
            let mut confirmed = Vec::new();
            if let Some(why) = stream_closed {
                confirmed.push(why);
            }
            if heartbeat_late {
                confirmed.push("heartbeat late");
            }
            if confirmed.is_empty() {
                Verdict::Suspect("gossip: down, but its dispatcher session is alive".into())
            } else {
                Verdict::Down(format!("gossip: down; {}", confirmed.join("; ")))
            }
        }
        Some(GossipState::Suspect) => Verdict::Suspect("gossip: suspect".into()),
        _ if heartbeat_late => Verdict::Suspect("heartbeat late".into()),
        _ => Verdict::Ready,
    }
}

/// How long after the instant `s` describes [`judge`] may first answer
/// otherwise if nothing but time passes (no heartbeat, no poll opened or
/// closed, no word from gossip); `None` when time alone changes nothing
/// more (the grace expired). The dispatcher judges a node again then, or
/// when one of its signals changes, instead of rescanning every node.
///
/// It names the instants at which one of the rule's thresholds is crossed,
/// so it may be early (a threshold that does not matter for this verdict),
/// never late; a test holds it to [`judge`] over a grid of signals.
pub fn next_change(s: &Signals) -> Option<Duration> {
    let period = s.heartbeat_period;
    // The heartbeat thresholds are compared with `>`: the answer changes
    // just past them; the stream's with `>=`: at them.
    let past = |limit: Duration| {
        (s.since_heartbeat <= limit).then(|| limit - s.since_heartbeat + Duration::from_nanos(1))
    };
    let at = |limit: Duration, elapsed: Duration| (elapsed < limit).then(|| limit - elapsed);
    let late = past(period + period / 2);
    let grace = past(period * MISSED_HEARTBEATS);
    // The stream counts only as gossip's second signal.
    let stream = match (s.gossip, s.stream) {
        (Some(GossipState::Down), Stream::ClosedFor(d)) => at(STREAM_GAP, d),
        (Some(GossipState::Down), Stream::NeverSeenFor(d)) => at(period, d),
        _ => None,
    };
    [late, grace, stream].into_iter().flatten().min()
}

/// Whether `message` is one [`judge`] gives a node it keeps ready, so that
/// the dispatcher clears it once the node is well again and leaves other
/// messages alone.
pub fn is_suspicion(message: &str) -> bool {
    message == "gossip: suspect"
        || message == "heartbeat late"
        || message.starts_with("gossip: down, but")
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_rule_needs_two_signals_or_the_grace_period() {
        use GossipState::*;
        let down = |m: &str| Verdict::Down(m.into());
        let suspect = |m: &str| Verdict::Suspect(m.into());
        use Stream::{ClosedFor, NeverSeenFor};
        let open = Stream::Open;
        // (since heartbeat, gossip, stream, verdict)
        let cases: Vec<(Duration, Option<GossipState>, Stream, Verdict)> = vec![
            // All well, with or without gossip.
            (ms(100), Some(Alive), open, Verdict::Ready),
            (ms(100), None, open, Verdict::Ready),
            // A stream between two polls, or reconnecting: not a signal alone.
            (ms(100), Some(Alive), ClosedFor(ms(3000)), Verdict::Ready),
            (ms(100), None, ClosedFor(ms(3000)), Verdict::Ready),
            // Suspicion alone never marks a node down.
            (ms(100), Some(Suspect), open, suspect("gossip: suspect")),
            (
                ms(100),
                Some(Suspect),
                ClosedFor(ms(3000)),
                suspect("gossip: suspect"),
            ),
            (
                ms(6000),
                Some(Suspect),
                ClosedFor(ms(6000)),
                suspect("gossip: suspect"),
            ),
            // Gossip down while the dispatcher hears the node: a UDP blip.
            (
                ms(100),
                Some(Down),
                open,
                suspect("gossip: down, but its dispatcher session is alive"),
            ),
            // ... or a stream that closed only just now (between two polls).
            (
                ms(100),
                Some(Down),
                ClosedFor(ms(10)),
                suspect("gossip: down, but its dispatcher session is alive"),
            ),
            // Gossip down and the stream closed: a dead process.
            (
                ms(100),
                Some(Down),
                ClosedFor(STREAM_GAP),
                down("gossip: down; assignments stream closed"),
            ),
            (
                ms(2000),
                Some(Down),
                ClosedFor(ms(1500)),
                down("gossip: down; assignments stream closed"),
            ),
            // Gossip down and heartbeats late: a hung machine, TCP still open.
            (
                ms(7501),
                Some(Down),
                open,
                down("gossip: down; heartbeat late"),
            ),
            (
                ms(8000),
                Some(Down),
                ClosedFor(ms(8000)),
                down("gossip: down; assignments stream closed; heartbeat late"),
            ),
            // Heartbeats late alone: noted, not down.
            (ms(7501), Some(Alive), open, suspect("heartbeat late")),
            (
                ms(9000),
                None,
                ClosedFor(ms(9000)),
                suspect("heartbeat late"),
            ),
            // The grace period alone marks it down, whatever gossip says.
            (ms(15_001), Some(Alive), open, down(HEARTBEAT_FAILURE)),
            (ms(15_001), None, open, down(HEARTBEAT_FAILURE)),
            (
                ms(15_001),
                Some(Down),
                ClosedFor(ms(15_001)),
                down(HEARTBEAT_FAILURE),
            ),
            (ms(15_000), Some(Alive), open, suspect("heartbeat late")),
            // One period exactly is an agent's normal gap between heartbeats.
            (ms(5200), Some(Alive), open, Verdict::Ready),
            (
                ms(5200),
                Some(Down),
                open,
                suspect("gossip: down, but its dispatcher session is alive"),
            ),
            // A stream never opened here counts once a live agent would
            // have found this leader: one heartbeat period.
            (
                ms(100),
                Some(Down),
                NeverSeenFor(ms(4900)),
                suspect("gossip: down, but its dispatcher session is alive"),
            ),
            (
                ms(100),
                Some(Down),
                NeverSeenFor(P),
                down("gossip: down; no assignments stream"),
            ),
            (ms(100), Some(Alive), NeverSeenFor(ms(9000)), Verdict::Ready),
        ];
        for (since_heartbeat, gossip, stream, want) in cases {
            let signals = Signals {
                since_heartbeat,
                heartbeat_period: P,
                gossip,
                stream,
            };
            assert_eq!(judge(&signals), want, "{signals:?}");
        }
    }

    /// The same node `t` later, nothing but time having passed.
    fn later(s: &Signals, t: Duration) -> Signals {
        Signals {
            since_heartbeat: s.since_heartbeat + t,
            stream: match s.stream {
                Stream::Open => Stream::Open,
                Stream::ClosedFor(d) => Stream::ClosedFor(d + t),
                Stream::NeverSeenFor(d) => Stream::NeverSeenFor(d + t),
            },
            ..s.clone()
        }
    }

    #[test]
    fn the_verdict_holds_until_the_next_change_and_it_is_named_exactly() {
        // A short period keeps the grid of instants small: 1 s, grace 3 s.
        let p = Duration::from_secs(1);
        let elapsed = [
            0, 1, 250, 499, 500, 501, 999, 1000, 1001, 1499, 1500, 1501, 2999, 3000,
        ]
        .map(ms)
        .into_iter()
        .chain([Duration::from_nanos(1), ms(1500) + Duration::from_nanos(1)]);
        let gossips = [
            None,
            Some(GossipState::Alive),
            Some(GossipState::Suspect),
            Some(GossipState::Down),
        ];
        let mut cases = 0;
        for since in elapsed.clone() {
            for gossip in gossips {
                for stream in [Stream::Open]
                    .into_iter()
                    .chain(elapsed.clone().map(Stream::ClosedFor))
                    .chain(elapsed.clone().map(Stream::NeverSeenFor))
                {
                    let s = Signals {
                        since_heartbeat: since,
                        heartbeat_period: p,
                        gossip,
                        stream,
                    };
                    let now = judge(&s);
                    // Instants up to the change (or well past the grace when
                    // none is named), and its last nanosecond before: the
                    // verdict only moves one way, so a change named late
                    // shows there.
                    let until = next_change(&s);
                    let horizon = until.unwrap_or(p * 10);
                    let steps = (horizon.as_millis() as u32).clamp(1, 50);
                    for t in (0..steps)
                        .map(|i| horizon * i / steps)
                        .chain([horizon.saturating_sub(Duration::from_nanos(1))])
                    {
                        if until.is_some() && t >= horizon {
                            continue;
                        }
                        assert_eq!(judge(&later(&s, t)), now, "{s:?} after {t:?}");
                    }
                    cases += 1;
                }
            }
        }
        assert!(cases > 1000, "{cases}");

        // Exactly when it changes, for the states a node spends its life in.
        let at = |since, gossip, stream| {
            next_change(&Signals {
                since_heartbeat: since,
                heartbeat_period: P,
                gossip,
                stream,
            })
        };
        let just = |d: Duration| Some(d + Duration::from_nanos(1));
        // A well node: "heartbeat late" just past one and a half periods.
        assert_eq!(
            at(ms(0), Some(GossipState::Alive), Stream::Open),
            just(ms(7500))
        );
        assert_eq!(
            at(ms(2000), None, Stream::ClosedFor(ms(100))),
            just(ms(5500))
        );
        // A late one: down just past the grace.
        assert_eq!(at(ms(8000), None, Stream::Open), just(ms(7000)));
        // Gossip down: the stream gap, or a period without a stream.
        assert_eq!(
            at(ms(0), Some(GossipState::Down), Stream::ClosedFor(ms(100))),
            Some(STREAM_GAP - ms(100))
        );
        assert_eq!(
            at(
                ms(0),
                Some(GossipState::Down),
                Stream::NeverSeenFor(ms(1000))
            ),
            Some(P - ms(1000))
        );
        // Past the grace nothing more changes.
        assert_eq!(at(ms(15_001), Some(GossipState::Down), Stream::Open), None);
    }

    /// The dispatcher does not judge a node again when its poll ends: it
    /// relies on a stream that closed just now reading as an open one.
    #[test]
    fn a_poll_that_just_closed_reads_as_an_open_stream() {
        for since in [0, 100, 5000, 7501, 15_001].map(ms) {
            for gossip in [
                None,
                Some(GossipState::Alive),
                Some(GossipState::Suspect),
                Some(GossipState::Down),
            ] {
                let s = |stream| Signals {
                    since_heartbeat: since,
                    heartbeat_period: P,
                    gossip,
                    stream,
                };
                assert_eq!(
                    judge(&s(Stream::ClosedFor(Duration::ZERO))),
                    judge(&s(Stream::Open)),
                    "{:?}",
                    s(Stream::Open)
                );
            }
        }
    }

    #[test]
    fn only_the_rules_own_suspicions_are_cleared() {
        for verdict in [
            judge(&Signals {
                since_heartbeat: ms(1),
                heartbeat_period: P,
                gossip: Some(GossipState::Suspect),
                stream: Stream::Open,
            }),
            judge(&Signals {
                since_heartbeat: ms(1),
                heartbeat_period: P,
                gossip: Some(GossipState::Down),
                stream: Stream::Open,
            }),
            judge(&Signals {
                since_heartbeat: ms(7501),
                heartbeat_period: P,
                gossip: None,
                stream: Stream::Open,
            }),
        ] {
            let Verdict::Suspect(m) = verdict else {
                panic!("a suspicion: {verdict:?}");
            };
            assert!(is_suspicion(&m), "{m}");
        }
        assert!(!is_suspicion(""));
        assert!(!is_suspicion("joined, waiting for its agent"));
        assert!(!is_suspicion(HEARTBEAT_FAILURE));
    }
}
