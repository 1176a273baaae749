//! Gossip among nodes: every node is a member of a SWIM group (foca) over UDP,
//! so that managers learn within seconds that a worker died, instead of
//! waiting for its dispatcher heartbeat to time out.
//!
//! foca is the protocol and nothing else; this module is its runtime: the UDP
//! socket, the timers foca asks for, the sealing of every datagram with the
//! cluster's gossip key ([`crypto`]), announcing to seeds until the node has
//! joined, and turning foca's membership into [`MemberEvent`]s.
//!
//! What foca reports, and what this module makes of it: foca's notifications
//! are `MemberUp`, `MemberDown`, `Rename` (a member came back under a newer
//! identity), and for the local node `Active`, `Idle`, `Defunct` and
//! `Rejoin`. It has no notification for suspicion (only the unstable
//! `ProbeFailed`, which is one prober's view). Its member table does carry the
//! `Suspect` state, so after every interaction with foca the driver compares
//! the table with the previous one and emits `Alive`, `Suspect` and `Down`
//! from the difference: one source of truth for events and for
//! [`Gossip::members`].

mod crypto;
mod identity;
mod runtime;
#[cfg(test)]
mod tests;

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use crypto::{GossipKey, Keyring, KEY_LEN, SEAL_OVERHEAD};

use crypto::Cipher;
use identity::NodeIdentity;

/// The default gossip port (Swarm's, UDP).
pub const DEFAULT_PORT: u16 = 7946;

/// Why gossip could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The UDP socket could not be bound. Retryable if the address is
    /// merely busy.
    #[error("binding the gossip socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable; not retryable.
    #[error("gossip configuration: {0}")]
    Config(String),
    /// The keyring is unusable; not retryable.
    #[error("gossip keyring: {0}")]
    Keyring(String),
    /// The system gave no randomness (for a key, a nonce or foca's seed).
    #[error("no randomness available")]
    Random,
    /// foca refused an operation (for example leaving twice).
    #[error("gossip protocol: {0}")]
    Protocol(String),
    /// The gossip task is no longer running.
    #[error("the gossip task has stopped")]
    Stopped,
}

/// SWIM's knobs. The failure of a member is noticed after it is next probed
/// (each member probes one other per `probe_period`), then one more
/// `probe_period` without an answer makes it suspect, and `suspect_to_down_after`
/// later it is down unless it refuted the suspicion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimSettings {
    /// How often this node probes one random member.
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking
    /// `indirect_probes` other members to probe on our behalf. Must be
    /// shorter than `probe_period`.
    pub probe_rtt: Duration,
    /// How many members are asked for an indirect probe.
    pub indirect_probes: usize,
    /// How long a suspect has to refute the suspicion before it is down.
    pub suspect_to_down_after: Duration,
    /// How often pending membership updates are pushed to a few members, on
    /// top of the ones that ride on probes.
    pub gossip_interval: Duration,
    /// How many times one update is sent before it is considered spread.
    pub retransmits: u8,
    /// How often a node that has not joined (or has lost every member)
    /// announces itself to the seeds.
    pub announce_interval: Duration,
    /// How often a joined node asks a random member for its member list, to
    /// catch members it missed, and how often it retries members it believes
    /// down (which heals partitions).
    pub sync_interval: Duration,
    /// How long a down member is remembered. Renewed identities rejoin at
    /// once regardless; this only stops a stale identity from coming back.
    pub remove_down_after: Duration,
}

impl SwimSettings {
    /// Defaults for a LAN, tuned so that a dead member is down everywhere
    /// in about a second and a half (at least `probe_period +
    /// suspect_to_down_after`, plus the wait until someone probes it and the
    /// spread of the news), which leaves the managers room to reschedule its
    /// tasks within 3 s. That is aggressive for a loaded host, on purpose:
    /// a live member wrongly declared down only rejoins under a new
    /// generation, and the managers never act on gossip's word alone (see
    /// `manager::liveness`). A LAN's round trip is well under a millisecond,
    /// so `probe_rtt` leaves room for a loaded host, not for the network.
    pub fn lan() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            indirect_probes: 3,
            suspect_to_down_after: Duration::from_millis(700),
            gossip_interval: Duration::from_millis(100),
            retransmits: 10,
            announce_interval: Duration::from_secs(1),
            sync_interval: Duration::from_secs(30),
            remove_down_after: Duration::from_secs(3600),
        }
    }

    fn validate(&self) -> Result<(), GossipError> {
        let durations = [
            ("probe_period", self.probe_period),
            ("probe_rtt", self.probe_rtt),
            ("suspect_to_down_after", self.suspect_to_down_after),
            ("gossip_interval", self.gossip_interval),
            ("announce_interval", self.announce_interval),
            ("sync_interval", self.sync_interval),
            ("remove_down_after", self.remove_down_after),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(GossipError::Config(format!("{name} must not be zero")));
        }
        if self.probe_rtt >= self.probe_period {
            return Err(GossipError::Config(
                "probe_rtt must be shorter than probe_period".into(),
            ));
        }
        if self.indirect_probes == 0 || self.retransmits == 0 {
            return Err(GossipError::Config(
                "indirect_probes and retransmits must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn foca_config(&self, max_datagram: usize) -> Result<foca::Config, GossipError> {
        let nonzero = |n: usize, what: &str| {
            NonZeroUsize::new(n).ok_or_else(|| GossipError::Config(format!("{what} is zero")))
        };
        Ok(foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: nonzero(self.indirect_probes, "indirect_probes")?,
            max_transmissions: NonZeroU8::new(self.retransmits)
                .ok_or_else(|| GossipError::Config("retransmits is zero".into()))?,
            suspect_to_down_after: self.suspect_to_down_after,
            remove_down_after: self.remove_down_after,
            // foca's packets are sealed afterwards: leave room for the seal
            // so that the datagram stays within max_datagram.
            max_packet_size: nonzero(max_datagram - SEAL_OVERHEAD, "max_datagram")?,
            // A member declared down is told so, renews its identity and
            // rejoins, instead of talking to a group that ignores it.
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.sync_interval,
                num_members: nonzero(1, "")?,
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.sync_interval,
                num_members: nonzero(2, "")?,
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: nonzero(self.indirect_probes, "indirect_probes")?,
            }),
        })
    }
}

impl Default for SwimSettings {
    fn default() -> Self {
        Self::lan()
    }
}

/// How to start a node's gossip.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// The node's id (the `Node` id in the store), as other members see it.
    pub node_id: String,
    /// Where the UDP socket binds. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// The address other members send to. Port 0 means the bound port, and
    /// an unspecified IP means the bound IP (which then must be specific).
    pub advertise: SocketAddr,
    /// Advertised addresses of members to announce to until joined. A node
    /// with no seeds waits for others to find it (the first manager).
    pub seeds: Vec<SocketAddr>,
    /// The gossip keys; see [`Keyring`].
    pub keys: Keyring,
    pub swim: SwimSettings,
    /// Which run of this node this is; a restarted node must use a larger
    /// value than its previous run so that it replaces it at once. The
    /// default, the wall clock in milliseconds, does that unless the clock
    /// steps back; a caller with a persistent counter can do better.
    pub generation: u64,
    /// The largest datagram sent or accepted, seal included. 1400 stays
    /// under a 1500-byte Ethernet MTU.
    pub max_datagram: usize,
}

impl GossipConfig {
    /// A configuration with LAN settings that advertises its bind address.
    pub fn new(node_id: impl Into<String>, bind: SocketAddr, keys: Keyring) -> Self {
        Self {
            node_id: node_id.into(),
            bind,
            advertise: bind,
            seeds: Vec::new(),
            keys,
            swim: SwimSettings::lan(),
            generation: clock_generation(),
            max_datagram: 1400,
        }
    }
}

fn clock_generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A member of the gossip group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub node_id: String,
    /// Its advertised gossip address.
    pub addr: SocketAddr,
    /// Which run of the node; grows across restarts and rejoins.
    pub generation: u64,
}

impl Member {
    fn from_identity(id: &NodeIdentity) -> Self {
        Self {
            node_id: id.node_id.clone(),
            addr: id.addr,
            generation: id.generation,
        }
    }

    fn is(&self, id: &NodeIdentity) -> bool {
        self.addr == id.addr && self.generation == id.generation && self.node_id == id.node_id
    }
}

/// A member's state as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    Alive,
    /// Some member failed to probe it; still treated as alive until it
    /// refutes the suspicion (back to `Alive`) or is declared `Down`.
    Suspect,
    /// Confirmed dead, or left the group.
    Down,
}

impl From<foca::State> for MemberState {
    fn from(state: foca::State) -> Self {
        match state {
            foca::State::Alive => Self::Alive,
            foca::State::Suspect => Self::Suspect,
            foca::State::Down => Self::Down,
        }
    }
}

/// A change in a member's state, in the order this node learned them.
///
/// `Alive` is also sent when a member comes back under a newer generation
/// (restart, or rejoin after a false down). `Down` is sent for a member that
/// was known alive or suspect, not for one first heard of as already down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    Alive(Member),
    Suspect(Member),
    Down(Member),
}

impl MemberEvent {
    pub fn member(&self) -> &Member {
        match self {
            Self::Alive(m) | Self::Suspect(m) | Self::Down(m) => m,
        }
    }
}

/// Packet counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams that could not be sent (full socket buffer, no route).
    pub send_failed: u64,
    /// Datagrams received, whatever became of them.
    pub received: u64,
    /// Received datagrams that did not authenticate with any key in the
    /// ring (wrong key, damaged, not ours), dropped.
    pub rejected: u64,
    /// Datagrams that authenticated but foca refused (for example one of our
    /// own, or from an incompatible version), dropped.
    pub invalid: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    send_failed: AtomicU64,
    received: AtomicU64,
    rejected: AtomicU64,
    invalid: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> GossipStats {
        GossipStats {
            sent: self.sent.load(Ordering::Relaxed),
            send_failed: self.send_failed.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
        }
    }
}

/// This node's own standing in the group.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LocalStatus {
    identity: Member,
    /// At least one live member knows our current identity.
    joined: bool,
}

enum Command {
    Leave(oneshot::Sender<Result<(), GossipError>>),
    Shutdown,
}

/// A running member of the gossip group. Dropping it stops gossip abruptly
/// (as a crash would); [`Gossip::leave`] departs gracefully.
pub struct Gossip {
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MemberEvent>,
    members: watch::Receiver<Vec<(Member, MemberState)>>,
    status: watch::Receiver<LocalStatus>,
    cipher: watch::Sender<Arc<Cipher>>,
    seeds: watch::Sender<Vec<SocketAddr>>,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("local_addr", &self.local_addr)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// How many member events a slow subscriber may fall behind before it is
/// told it lagged (and should re-read [`Gossip::members`]).
const EVENT_BACKLOG: usize = 1024;

impl Gossip {
    /// Binds the socket and starts the task that runs the protocol. Must be
    /// called within a tokio runtime.
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        Self::check(&config)?;
        let socket = bind(config.bind)?;
        Self::start_with_socket(config, socket).await
    }

    /// Starts on a socket bound beforehand (`config.bind` is then unused):
    /// a node binds its gossip port before it asks to join, since the port
    /// goes into its join request.
    pub async fn start_with_socket(
        config: GossipConfig,
        std_socket: StdUdpSocket,
    ) -> Result<Gossip, GossipError> {
        Self::check(&config)?;
        let cipher = Arc::new(Cipher::new(&config.keys)?);
        let foca_config = config.swim.foca_config(config.max_datagram)?;
        let bind_err = |source| GossipError::Bind {
            addr: config.bind,
            source,
        };
        std_socket.set_nonblocking(true).map_err(bind_err)?;
        let socket = tokio::net::UdpSocket::from_std(std_socket).map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        let advertise = advertised(config.advertise, local_addr)?;

        let identity = NodeIdentity {
            node_id: config.node_id.clone(),
            addr: advertise,
            generation: config.generation,
        };
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (members_tx, members) = watch::channel(Vec::new());
        let (status_tx, status) = watch::channel(LocalStatus {
            identity: Member::from_identity(&identity),
            joined: false,
        });
        let (cipher_tx, cipher_rx) = watch::channel(cipher);
        let (seeds_tx, seeds_rx) = watch::channel(config.seeds);
        let (commands_tx, commands_rx) = mpsc::channel(4);
        let counters = Arc::new(Counters::default());

        let driver = runtime::Driver::new(runtime::DriverParts {
            identity,
            foca_config,
            rng_seed: random_seed()?,
            socket,
            cipher: cipher_rx,
            seeds: seeds_rx,
            announce_interval: config.swim.announce_interval,
            max_datagram: config.max_datagram,
            events: events.clone(),
            members: members_tx,
            status: status_tx,
            counters: Arc::clone(&counters),
            commands: commands_rx,
        });
        let task = tokio::spawn(driver.run());
        tracing::info!(node = %config.node_id, bind = %local_addr, %advertise, "gossip started");
        Ok(Gossip {
            local_addr,
            commands: commands_tx,
            events,
            members,
            status,
            cipher: cipher_tx,
            seeds: seeds_tx,
            counters,
            task: Some(task),
        })
    }

    /// What is wrong with `config`, checked before any port is taken.
    fn check(config: &GossipConfig) -> Result<(), GossipError> {
        config.swim.validate()?;
        if config.node_id.is_empty() {
            return Err(GossipError::Config("node_id is empty".into()));
        }
        // 65507 is the largest UDP payload over IPv4.
        if !(SEAL_OVERHEAD + 512..=65_507).contains(&config.max_datagram) {
            return Err(GossipError::Config(format!(
                "max_datagram must be between {} and 65507",
                SEAL_OVERHEAD + 512
            )));
        }
        if config.advertise.ip().is_unspecified() && config.bind.ip().is_unspecified() {
            return Err(GossipError::Config(
                "advertise address needs a specific IP when binding a wildcard".into(),
            ));
        }
        Ok(())
    }

    /// The address the socket is bound to (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node as the group knows it (its generation grows when it rejoins
    /// after being declared down).
    pub fn local_member(&self) -> Member {
        self.status.borrow().identity.clone()
    }

    /// Whether at least one live member knows this node.
    pub fn is_joined(&self) -> bool {
        self.status.borrow().joined
    }

    /// Member events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// Every other member this node knows, with its state; down members stay
    /// listed until `remove_down_after`.
    pub fn members(&self) -> Vec<(Member, MemberState)> {
        self.members.borrow().clone()
    }

    /// The member list as a watch, to wait for a condition on it.
    pub fn watch_members(&self) -> watch::Receiver<Vec<(Member, MemberState)>> {
        self.members.clone()
    }

    /// Replaces the keyring; the next datagram is sealed with the new
    /// primary and any key in the new ring opens received ones.
    pub fn set_keys(&self, keys: Keyring) -> Result<(), GossipError> {
        let cipher = Cipher::new(&keys)?;
        self.cipher.send_replace(Arc::new(cipher));
        Ok(())
    }

    /// Replaces the seeds announced to while this node is not joined (the
    /// managers' gossip addresses, as the cluster changes).
    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        self.seeds.send_if_modified(|s| {
            let changed = *s != seeds;
            *s = seeds;
            changed
        });
    }

    pub fn stats(&self) -> GossipStats {
        self.counters.snapshot()
    }

    /// Leaves the group gracefully: tells a few members that this node is
    /// down (they spread it), then stops. If those datagrams are lost the
    /// group still finds out by probing, only later.
    pub async fn leave(mut self) -> Result<(), GossipError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.commands
            .send(Command::Leave(done_tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        let result = done_rx.await.map_err(|_| GossipError::Stopped)?;
        if let Some(task) = self.task.take() {
            // The task ends right after answering; a panic in it has
            // already been reported by tokio.
            let _ = task.await;
        }
        result
    }

    /// Stops gossip without telling anyone, as a crash would; the group
    /// declares this node down by probing.
    pub async fn shutdown(mut self) {
        // If the task already ended the send fails, which is fine.
        let _ = self.commands.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds a gossip socket, for [`Gossip::start_with_socket`].
pub fn bind(addr: SocketAddr) -> Result<StdUdpSocket, GossipError> {
    StdUdpSocket::bind(addr).map_err(|source| GossipError::Bind { addr, source })
}

fn advertised(advertise: SocketAddr, bound: SocketAddr) -> Result<SocketAddr, GossipError> {
    let mut addr = advertise;
    if addr.port() == 0 {
        addr.set_port(bound.port());
    }
    if addr.ip().is_unspecified() {
        if bound.ip().is_unspecified() {
            return Err(GossipError::Config(
                "advertise address needs a specific IP when binding a wildcard".into(),
            ));
        }
        addr.set_ip(bound.ip());
    }
    Ok(addr)
}

fn random_seed() -> Result<[u8; 32], GossipError> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| GossipError::Random)?;
    Ok(seed)
}
