//! The task that runs foca: it owns the UDP socket and foca's timers, opens
//! incoming datagrams before foca reads them and seals what foca sends, and
//! after every interaction publishes what changed in the member table.
//!
//! One task does everything, so foca (which is not thread-safe and needs no
//! lock) is only ever touched from here, and the order of datagrams, timers
//! and commands is the order foca sees them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{Foca, NoCustomBroadcast, Notification, OwnedNotification, PostcardCodec, Timer};
use rand_09::rngs::StdRng;
use rand_09::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::crypto::Cipher;
use super::identity::NodeIdentity;
use super::{Command, Counters, GossipError, LocalStatus, Member, MemberEvent, MemberState};

type Swim = Foca<NodeIdentity, PostcardCodec, StdRng, NoCustomBroadcast>;

/// Everything `Gossip::start` hands to the task.
pub(super) struct DriverParts {
    pub(super) identity: NodeIdentity,
    pub(super) foca_config: foca::Config,
    pub(super) rng_seed: [u8; 32],
    pub(super) socket: UdpSocket,
    pub(super) cipher: watch::Receiver<Arc<Cipher>>,
    pub(super) seeds: watch::Receiver<Vec<SocketAddr>>,
    pub(super) announce_interval: Duration,
    pub(super) max_datagram: usize,
    pub(super) events: broadcast::Sender<MemberEvent>,
    pub(super) members: watch::Sender<Vec<(Member, MemberState)>>,
    pub(super) status: watch::Sender<LocalStatus>,
    pub(super) counters: Arc<Counters>,
    pub(super) commands: mpsc::Receiver<Command>,
}

pub(super) struct Driver {
    foca: Swim,
    io: Io,
    /// Where to announce until joined; this node's own address is skipped.
    seeds: watch::Receiver<Vec<SocketAddr>>,
    announce_interval: Duration,
    max_datagram: usize,
    joined: bool,
    /// The member table as last published, keyed like foca's (by address).
    known: BTreeMap<SocketAddr, (Member, MemberState)>,
    events: broadcast::Sender<MemberEvent>,
    members: watch::Sender<Vec<(Member, MemberState)>>,
    status: watch::Sender<LocalStatus>,
    commands: mpsc::Receiver<Command>,
    protocol_log: RateLimit,
}

/// foca's window on the world: what it sends goes out sealed at once, the
/// timers it asks for go into a queue the task sleeps on, and notifications
/// wait until foca returns.
struct Io {
    socket: UdpSocket,
    cipher: watch::Receiver<Arc<Cipher>>,
    timers: Timers,
    notifications: Vec<OwnedNotification<NodeIdentity>>,
    sealed: Vec<u8>,
    counters: Arc<Counters>,
    send_log: RateLimit,
}

impl foca::Runtime<NodeIdentity> for Io {
    fn notify(&mut self, notification: Notification<'_, NodeIdentity>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        if let Err(e) = self.cipher.borrow().seal(data, &mut self.sealed) {
            Counters::bump(&self.counters.send_failed);
            if let Some(suppressed) = self.send_log.allow(Instant::now()) {
                tracing::warn!(error = %e, suppressed, "could not seal a gossip datagram");
            }
            return;
        }
        // UDP is allowed to lose packets and SWIM expects it to: a full
        // socket buffer drops this one rather than stalling the protocol.
        match self.socket.try_send_to(&self.sealed, to.addr) {
            Ok(_) => Counters::bump(&self.counters.sent),
            Err(e) => {
                Counters::bump(&self.counters.send_failed);
                if let Some(suppressed) = self.send_log.allow(Instant::now()) {
                    tracing::debug!(to = %to.addr, error = %e, suppressed, "gossip send failed");
                }
            }
        }
    }

    fn submit_after(&mut self, event: Timer<NodeIdentity>, after: Duration) {
        self.timers.push(Instant::now() + after, event);
    }
}

/// foca's pending timers, soonest first; the sequence number keeps timers
/// due at the same instant in the order foca asked for them.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer<NodeIdentity>)>>,
    seq: u64,
}

impl Timers {
    fn push(&mut self, at: Instant, timer: Timer<NodeIdentity>) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Every timer due by `now`. When the task was late and several are due
    /// at once, foca wants them in its own order (an indirect probe before
    /// the next probe), which `Timer`'s `Ord` gives; the sort is stable.
    fn take_due(&mut self, now: Instant) -> Vec<Timer<NodeIdentity>> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, timer))) = self.heap.pop() {
                due.push(timer);
            }
        }
        due.sort();
        due
    }
}

/// Lets one log line through per interval and counts the ones it held back,
/// so that a flood of bad packets cannot flood the log.
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(how many were suppressed since the last one)` if this one may
    /// be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl Driver {
    pub(super) fn new(parts: DriverParts) -> Self {
        let rng = StdRng::from_seed(parts.rng_seed);
        Self {
            foca: Foca::new(parts.identity, parts.foca_config, rng, PostcardCodec),
            io: Io {
                socket: parts.socket,
                cipher: parts.cipher,
                timers: Timers::default(),
                notifications: Vec::new(),
                sealed: Vec::with_capacity(parts.max_datagram),
                counters: parts.counters,
                send_log: RateLimit::new(LOG_EVERY),
            },
            seeds: parts.seeds,
            announce_interval: parts.announce_interval,
            max_datagram: parts.max_datagram,
            joined: false,
            known: BTreeMap::new(),
            events: parts.events,
            members: parts.members,
            status: parts.status,
            commands: parts.commands,
            protocol_log: RateLimit::new(LOG_EVERY),
        }
    }

    pub(super) async fn run(mut self) {
        // One byte more than the largest datagram we accept, so an oversized
        // one is seen as such instead of silently truncated.
        let mut buf = vec![0u8; self.max_datagram + 1];
        let mut announce = tokio::time::interval(self.announce_interval);
        announce.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wake = self.io.timers.next_deadline();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        let result = self.leave();
                        // The caller may have stopped waiting; nothing to do then.
                        let _ = done.send(result);
                        return;
                    }
                    Some(Command::Shutdown) | None => return,
                },
                received = self.io.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.on_datagram(&mut buf[..len], from),
                    Err(e) => {
                        // Unconnected UDP sockets report little (no ICMP
                        // errors); whatever it is, the next datagram may be fine.
                        if let Some(suppressed) = self.protocol_log.allow(Instant::now()) {
                            tracing::warn!(error = %e, suppressed, "gossip receive failed");
                        }
                    }
                },
                () = sleep_until(wake) => self.on_timers(),
                _ = announce.tick() => self.announce_to_seeds(),
            }
            self.after_interaction();
        }
    }

    fn on_datagram(&mut self, packet: &mut [u8], from: SocketAddr) {
        Counters::bump(&self.io.counters.received);
        if packet.len() > self.max_datagram {
            Counters::bump(&self.io.counters.invalid);
            tracing::debug!(%from, len = packet.len(), "dropped an oversized gossip datagram");
            return;
        }
        // A clone of the Arc, so the plaintext's borrow does not hold the
        // watch (and `self.io`) while foca runs.
        let cipher = Arc::clone(&self.io.cipher.borrow());
        let plaintext = match cipher.open(packet) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                Counters::bump(&self.io.counters.rejected);
                // Per packet at debug level only: anyone can send us garbage.
                tracing::debug!(%from, error = %e, "dropped a gossip datagram that did not authenticate");
                if let Some(suppressed) = self.protocol_log.allow(Instant::now()) {
                    tracing::warn!(
                        %from,
                        suppressed,
                        "dropping gossip datagrams that do not authenticate (a node with another key?)"
                    );
                }
                return;
            }
        };
        if let Err(e) = self.foca.handle_data(plaintext, &mut self.io) {
            Counters::bump(&self.io.counters.invalid);
            tracing::debug!(%from, error = %e, "foca refused a gossip datagram");
        }
    }

    fn on_timers(&mut self) {
        for timer in self.io.timers.take_due(Instant::now()) {
            if let Err(e) = self.foca.handle_timer(timer, &mut self.io) {
                if let Some(suppressed) = self.protocol_log.allow(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "gossip timer failed");
                }
            }
        }
    }

    /// Until joined, and again whenever every known member is gone, this
    /// node asks the seeds to let it in. Every seed, each time: the group is
    /// joined through whichever answers first.
    fn announce_to_seeds(&mut self) {
        if self.joined {
            return;
        }
        let me = self.foca.identity().addr;
        let seeds: Vec<SocketAddr> = self
            .seeds
            .borrow()
            .iter()
            .copied()
            .filter(|s| *s != me)
            .collect();
        for seed in seeds {
            if let Err(e) = self.foca.announce(NodeIdentity::seed(seed), &mut self.io) {
                tracing::debug!(%seed, error = %e, "announcing to a gossip seed failed");
            }
        }
    }

    fn leave(&mut self) -> Result<(), GossipError> {
        let result = self
            .foca
            .leave_cluster(&mut self.io)
            .map_err(|e| GossipError::Protocol(e.to_string()));
        self.after_interaction();
        tracing::info!("left the gossip group");
        result
    }

    fn after_interaction(&mut self) {
        for notification in std::mem::take(&mut self.io.notifications) {
            self.on_notification(notification);
        }
        self.publish_changes();
    }

    fn on_notification(&mut self, notification: OwnedNotification<NodeIdentity>) {
        match notification {
            OwnedNotification::Active => {
                tracing::info!("joined the gossip group");
                self.set_joined(true);
            }
            OwnedNotification::Idle => {
                tracing::info!("no live gossip member left; announcing to the seeds again");
                self.set_joined(false);
            }
            OwnedNotification::Defunct => {
                // Only after leaving: renewable identities rejoin instead.
                tracing::info!("this node's gossip identity is down");
                self.set_joined(false);
            }
            OwnedNotification::Rejoin(identity) => {
                tracing::info!(
                    generation = identity.generation,
                    "the group declared this node down; rejoined as a new generation"
                );
                self.status
                    .send_modify(|s| s.identity = Member::from_identity(&identity));
            }
            // Member changes are read from the member table, which also
            // carries suspicion; these are only worth a debug line.
            other => tracing::debug!(notification = ?other, "gossip membership"),
        }
    }

    fn set_joined(&mut self, joined: bool) {
        self.joined = joined;
        self.status.send_if_modified(|s| {
            let changed = s.joined != joined;
            s.joined = joined;
            changed
        });
    }

    /// Compares foca's member table with the last published one, emits an
    /// event per changed member and publishes the new table. The common case
    /// (nothing changed) allocates nothing.
    fn publish_changes(&mut self) {
        let table = self.foca.iter_membership_state();
        let unchanged = table.len() == self.known.len()
            && self.foca.iter_membership_state().all(|m| {
                matches!(self.known.get(&m.id().addr),
                    Some((known, state)) if known.is(m.id()) && *state == MemberState::from(m.state()))
            });
        if unchanged {
            return;
        }

        let mut current = BTreeMap::new();
        for m in self.foca.iter_membership_state() {
            let member = Member::from_identity(m.id());
            let state = MemberState::from(m.state());
            let event = match self.known.get(&member.addr) {
                Some((known, known_state)) if *known == member && *known_state == state => None,
                // First heard of as already down: it never was a member to us.
                None if state == MemberState::Down => None,
                _ => Some(event(member.clone(), state)),
            };
            if let Some(event) = event {
                self.emit(event);
            }
            current.insert(member.addr, (member, state));
        }
        // foca forgets down members after `remove_down_after`; a member that
        // vanished without being down first is reported down.
        for (addr, (member, state)) in &self.known {
            if !current.contains_key(addr) && *state != MemberState::Down {
                self.emit(MemberEvent::Down(member.clone()));
            }
        }
        self.known = current;
        self.members
            .send_replace(self.known.values().cloned().collect());
    }

    fn emit(&self, event: MemberEvent) {
        tracing::debug!(?event, "gossip member event");
        // No subscriber is fine: the table is still published.
        let _ = self.events.send(event);
    }
}

fn event(member: Member, state: MemberState) -> MemberEvent {
    match state {
        MemberState::Alive => MemberEvent::Alive(member),
        MemberState::Suspect => MemberEvent::Suspect(member),
        MemberState::Down => MemberEvent::Down(member),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(token: u8) -> Timer<NodeIdentity> {
        Timer::ProbeRandomMember(token)
    }

    #[test]
    fn due_timers_come_out_in_foca_order() {
        let mut timers = Timers::default();
        let now = Instant::now();
        let probed = NodeIdentity::seed(SocketAddr::from(([127, 0, 0, 1], 1)));
        timers.push(now, probe(1));
        timers.push(
            now,
            Timer::SendIndirectProbe {
                probed_id: probed,
                token: 1,
            },
        );
        timers.push(now + Duration::from_secs(5), probe(2));
        let due = timers.take_due(now);
        assert!(matches!(due[0], Timer::SendIndirectProbe { .. }));
        assert_eq!(due[1], probe(1));
        assert_eq!(due.len(), 2);
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(11)), Some(2));
    }
}
