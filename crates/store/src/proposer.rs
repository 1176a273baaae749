//! Turns waiting `update()` calls into log entries.
//!
//! One task per store takes the requests queued while the previous entry was
//! being made durable and proposes them together, as one [`Proposal`], so
//! that concurrent writers share one fsync. On the leader it proposes them
//! to Raft; on a follower it forwards them to the leader (`Forward` RPC), then
//! answers each caller once this manager has applied the entry too, so that
//! a caller reads its own write on the manager it wrote through.
//!
//! The leader's `Forward` handler queues a follower's batches here as one
//! request (all in one entry, so a retry can never apply half of them twice).
//! A forwarded request is never forwarded again: a receiver that is not the
//! leader answers "not leader" and proposes nothing, and the follower retries
//! at the leader it learns of, which is always safe. Any failure after a
//! write may have been proposed is answered, never retried: the caller gets
//! [`StoreError::OutcomeUnknown`] (the write may still be applied). That
//! includes a leader's entry that a new leader's entries replaced, which
//! openraft reports as "not leader" like a write it refused outright: the
//! log store's [`Appends`](crate::log_store::Appends) tells the two apart.
//!
//! A write on its way to the leader is watched, as the leader watches its
//! own proposals: it is given up, as of unknown outcome, as soon as this
//! manager loses its majority, the leader stops answering this manager's
//! probes, or another leader is known and the old one still has not
//! answered. A partition that drops packets (rather than refusing
//! connections) would otherwise hold the write for the whole write timeout.
//! A leader that already stopped answering is not sent the write at all:
//! the follower waits for the next leader instead, which is safe since
//! nothing was sent.

use crate::cluster::{leader_in, no_leader};
use crate::log_store::Watched;
use crate::network::ForwardFailure;
use crate::types::{NodeId, Proposal, Response, TypeConfig};
use crate::{write_error, Core, StoreError, MAX_BATCHES_PER_ENTRY};
use api::rpc::raft::{forward_reply::Outcome, ForwardRequest};
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Batches waiting to be proposed together, and who waits for them.
pub(crate) struct Request {
    /// Moved into the entry when it is proposed (see [`take_batches`]).
    pub(crate) batches: Vec<api::Batch>,
    /// How many batches the request has, which its answer must have too.
    pub(crate) count: usize,
    /// Came from another manager through `Forward`: never forward it again.
    pub(crate) forwarded: bool,
    /// When the caller gives up; later, its answer no longer matters.
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// The log index of the entry and one result per batch of the request, in
/// order.
pub(crate) type Reply = Result<(u64, Response), Failure>;

#[derive(Debug)]
pub(crate) enum Failure {
    /// This manager is not the leader and proposed nothing (forwarded
    /// requests only).
    NotLeader(Option<NodeId>),
    Store(StoreError),
}

/// Runs until every `Store` handle is dropped.
pub(crate) async fn run(core: Arc<Core>, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = requests.recv().await {
        let mut waiting = vec![first];
        let mut batches = waiting[0].batches.len();
        while batches < MAX_BATCHES_PER_ENTRY {
            match requests.try_recv() {
                Ok(r) => {
                    batches += r.batches.len();
                    waiting.push(r);
                }
                Err(_) => break,
            }
        }
        // A caller that already gave up (timed out) was told its write may or
        // may not be applied; not proposing it is the cheaper of the two.
        waiting.retain(|r| !r.reply.is_closed());
        if waiting.is_empty() {
            continue;
        }
        propose_group(&core, waiting).await;
    }
}

async fn propose_group(core: &Arc<Core>, mut waiting: Vec<Request>) {
    let mut local = Vec::new();
    if core.is_leader() {
        let batches = take_batches(&mut waiting);
        match write_as_leader(core, batches.clone()).await {
            Ok((index, results)) => return answer(waiting, index, results),
            Err(Failure::NotLeader(hint)) => {
                // Refused before it was appended: the local writes may go
                // to the new leader, so they get their batches back.
                let mut at = 0;
                for mut r in waiting {
                    let mine = at..at + r.count;
                    at += r.count;
                    if r.forwarded {
                        let _ = r.reply.send(Err(Failure::NotLeader(hint)));
                    } else {
                        r.batches = batches.get(mine).unwrap_or_default().to_vec();
                        local.push(r);
                    }
                }
            }
            Err(Failure::Store(e)) => {
                for r in waiting {
                    let _ = r.reply.send(Err(Failure::Store(e.clone())));
                }
                return;
            }
        }
    } else {
        let hint = core.metrics.borrow().current_leader;
        for r in waiting {
            if r.forwarded {
                let _ = r.reply.send(Err(Failure::NotLeader(hint)));
            } else {
                local.push(r);
            }
        }
    }
    if local.is_empty() {
        return;
    }
    let deadline = local
        .iter()
        .map(|r| r.deadline)
        .max()
        .unwrap_or_else(Instant::now);
    match propose_anywhere(core, &take_batches(&mut local), deadline).await {
        Ok((index, results)) => {
            // The caller must be able to read its write here: wait until this
            // manager has applied the entry, without holding up the next one.
            let core = core.clone();
            tokio::spawn(async move {
                let mut applied = core.shared.applied_index.subscribe();
                let caught_up =
                    tokio::time::timeout_at(deadline, applied.wait_for(|i| *i >= index))
                        .await
                        .is_ok_and(|r| r.is_ok());
                match caught_up {
                    true => answer(local, index, results),
                    false => {
                        // Committed, so it will be applied here too: the
                        // caller just cannot read it here yet.
                        let e = StoreError::OutcomeUnknown(format!(
                            "the write was committed at index {index} but this manager has not applied it yet"
                        ));
                        for r in local {
                            let _ = r.reply.send(Err(Failure::Store(e.clone())));
                        }
                    }
                }
            });
        }
        Err(e) => {
            for r in local {
                let _ = r.reply.send(Err(Failure::Store(e.clone())));
            }
        }
    }
}

/// Moves the batches of `requests` into one shared list, in order (each
/// request keeps its `count`): an entry carries them without a copy.
fn take_batches(requests: &mut [Request]) -> Arc<[api::Batch]> {
    let mut all = Vec::with_capacity(requests.iter().map(|r| r.count).sum());
    for r in requests.iter_mut() {
        all.append(&mut r.batches);
    }
    all.into()
}

/// Hands each request its share of the entry's results.
fn answer(requests: Vec<Request>, index: u64, results: Response) {
    let mut results = results.into_iter();
    for r in requests {
        let mine: Response = results.by_ref().take(r.count).collect();
        let reply = if mine.len() == r.count {
            Ok((index, mine))
        } else {
            Err(Failure::Store(StoreError::Storage(format!(
                "entry {index} answered fewer results than it had batches"
            ))))
        };
        let _ = r.reply.send(reply);
    }
}

/// Proposes `batches` as one entry on this manager, the leader. Fails fast
/// when the leader cannot reach a majority, before proposing
/// ([`StoreError::Unavailable`]) and while the entry waits to be committed
/// ([`StoreError::OutcomeUnknown`]; openraft 0.9's leader never steps down
/// by itself when it loses its followers).
pub(crate) async fn write_as_leader(
    core: &Core,
    batches: Arc<[api::Batch]>,
) -> Result<(u64, Response), Failure> {
    core.quorum()
        .map_err(|e| Failure::Store(StoreError::Unavailable(e)))?;
    let watched = core.appends.watch();
    let write = core.raft.client_write(Proposal::new(batches, watched.tag));
    if !core.peers.has_network() {
        // A single node cannot lose its quorum: spare every write a timer.
        return answered(write.await, &watched);
    }
    tokio::pin!(write);
    let mut check = tokio::time::interval(core.config.heartbeat_interval);
    check.reset();
    loop {
        tokio::select! {
            result = &mut write => return answered(result, &watched),
            _ = check.tick() => {
                if let Err(e) = core.quorum() {
                    return Err(Failure::Store(StoreError::OutcomeUnknown(e)));
                }
            }
        }
    }
}

/// What the proposer makes of openraft's answer to the proposal `watched`.
fn answered(
    result: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
    >,
    watched: &Watched,
) -> Result<(u64, Response), Failure> {
    match result {
        Ok(resp) => Ok((resp.log_id.index, resp.data)),
        // Appended, then replaced by a new leader's entries: other managers
        // may hold it and one of them may still commit it (with five
        // managers, a later leader can), so it must not be proposed again.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) if watched.appended() => {
            let to = f.leader_id.map_or_else(
                || "another manager".to_string(),
                |id| format!("manager {id}"),
            );
            Err(Failure::Store(StoreError::OutcomeUnknown(format!(
                "this manager lost the leadership to {to} before its entry for the write was committed"
            ))))
        }
        // Refused before it was appended: never proposed.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(Failure::NotLeader(f.leader_id))
        }
        // Raft stopped with the entry perhaps in the log.
        Err(RaftError::Fatal(openraft::error::Fatal::Stopped)) => Err(Failure::Store(
            StoreError::OutcomeUnknown("raft stopped before the write was answered".into()),
        )),
        Err(e) => Err(Failure::Store(write_error(e))),
    }
}

/// Proposes `batches` through whichever manager leads: here if this one
/// does, else forwarded. Retries only what surely was not proposed (the
/// receiver was not the leader, the connection was refused, or the leader
/// was already out of reach and so was not sent it), at the leader it
/// learns of, until `deadline`.
async fn propose_anywhere(
    core: &Core,
    batches: &Arc<[api::Batch]>,
    deadline: Instant,
) -> Result<(u64, Response), StoreError> {
    let body = serde_json::to_vec(&**batches)
        .map_err(|e| StoreError::Storage(format!("encoding a write for the leader: {e}")))?;
    let mut metrics = core.metrics.clone();
    // The leader that just refused or could not be reached: wait for another
    // one (or a heartbeat) before trying it again.
    let mut refused_by: Option<NodeId> = None;
    loop {
        core.quorum().map_err(StoreError::Unavailable)?;
        let now = Instant::now();
        if now >= deadline {
            return Err(StoreError::Unavailable(no_leader(
                core,
                core.config.write_timeout,
            )));
        }
        match core.leader() {
            Some((id, _)) if id == core.me && refused_by != Some(id) => {
                match write_as_leader(core, batches.clone()).await {
                    Ok(written) => return Ok(written),
                    Err(Failure::NotLeader(_)) => refused_by = Some(id),
                    Err(Failure::Store(e)) => return Err(e),
                }
            }
            Some((id, _)) if refused_by != Some(id) && out_of_reach(core, id) => {
                // The leader this manager still knows has not answered it for
                // a whole reachability window: a write sent there would wait
                // in a dead connection. The others may be electing a new one.
                tracing::debug!(
                    leader = id,
                    "the leader is out of reach; waiting for a new one"
                );
                refused_by = Some(id);
            }
            Some((id, addr)) if refused_by != Some(id) => {
                let request = ForwardRequest {
                    batches: body.clone(),
                };
                let forward = core.peers.forward(id, &addr, request, deadline - now);
                let reply = match watch_forward(core, id, &addr, "the write", forward).await {
                    Ok(reply) => reply,
                    Err(why) => return Err(StoreError::OutcomeUnknown(why)),
                };
                match reply {
                    Ok(reply) => match reply.outcome {
                        Some(Outcome::Applied(a)) => {
                            let results: Response =
                                serde_json::from_slice(&a.results).map_err(|e| {
                                    StoreError::OutcomeUnknown(format!(
                                        "the leader applied the write at index {} but its answer could not be read: {e}",
                                        a.index
                                    ))
                                })?;
                            return Ok((a.index, results));
                        }
                        Some(Outcome::NotLeader(_)) => refused_by = Some(id),
                        Some(Outcome::Refused(why)) => return Err(StoreError::Unavailable(why)),
                        Some(Outcome::OutcomeUnknown(why)) => {
                            return Err(StoreError::OutcomeUnknown(why))
                        }
                        None => {
                            return Err(StoreError::OutcomeUnknown(format!(
                                "the leader (manager {id} at {addr}) sent an answer this manager cannot read"
                            )))
                        }
                    },
                    Err(ForwardFailure::NotSent(e)) => {
                        tracing::debug!(error = %e, "the leader is unreachable; waiting for a new one");
                        refused_by = Some(id);
                    }
                    Err(ForwardFailure::Lost(status)) => {
                        let lost = format!(
                            "lost the answer of the leader (manager {id} at {addr}): {}",
                            status.message()
                        );
                        return Err(explain_lost(core, lost, deadline).await);
                    }
                    Err(ForwardFailure::TimedOut) => {
                        let lost =
                            format!("the leader (manager {id} at {addr}) did not answer in time");
                        return Err(explain_lost(core, lost, deadline).await);
                    }
                }
            }
            _ => {}
        }
        // Wait for a leader other than the one that just failed, for one
        // heartbeat at most; then check the quorum and try again.
        let wait = core
            .config
            .heartbeat_interval
            .min(deadline.saturating_duration_since(Instant::now()));
        let changed = tokio::time::timeout(
            wait,
            metrics.wait_for(|m| leader_in(m).is_some_and(|(id, _)| Some(id) != refused_by)),
        )
        .await;
        match changed {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(StoreError::Unavailable("raft is stopped".into())),
            // A whole heartbeat with no other leader: try that one again.
            Err(_) => refused_by = None,
        }
    }
}

/// Whether this manager has heard nothing from `id` for a whole
/// reachability window (the probes ask every heartbeat). Never while the
/// store has just opened and nobody was asked yet.
pub(crate) fn out_of_reach(core: &Core, id: NodeId) -> bool {
    !core.peers.too_early_to_judge() && !core.peers.reachable(id)
}

/// Waits for the answer of the leader `id` to `what` (a forwarded write, a
/// change of managers), and gives up early, with the cause, when waiting
/// longer cannot help: this manager
/// lost its majority, the leader stopped answering its probes, or another
/// leader is known and the old one has not answered for an election
/// timeout since (a leader that stepped down answers by then: its entry is
/// either committed by the new leader or overwritten, which it reports as
/// "not leader"). The request may have reached the leader, so it is never
/// retried after giving up.
pub(crate) async fn watch_forward<F>(
    core: &Core,
    id: NodeId,
    addr: &str,
    what: &str,
    forward: F,
) -> Result<F::Output, String>
where
    F: std::future::Future,
{
    tokio::pin!(forward);
    let mut check = tokio::time::interval(core.config.heartbeat_interval / 2);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    let mut replaced: Option<(NodeId, Instant)> = None;
    loop {
        tokio::select! {
            answer = &mut forward => return Ok(answer),
            _ = check.tick() => {
                core.quorum()?;
                if out_of_reach(core, id) {
                    return Err(format!(
                        "lost contact with the leader (manager {id} at {addr}) while {what} was on its way to it"
                    ));
                }
                match core.leader() {
                    Some((other, _)) if other != id => {
                        let (new, since) = *replaced.get_or_insert((other, Instant::now()));
                        if since.elapsed() >= core.config.election_timeout_max {
                            return Err(format!(
                                "manager {new} became the leader while {what} was on its way to manager {id} at {addr}, which did not answer"
                            ));
                        }
                    }
                    _ => replaced = None,
                }
            }
        }
    }
}

/// The error for a forwarded write whose answer was lost (the connection
/// broke, or the leader did not answer in time). It may have been proposed,
/// so it is not retried; but if the cause is that this manager has lost the
/// majority, the caller should hear that rather than about a connection: the
/// probes tell within one reachability window, which is waited for here.
async fn explain_lost(core: &Core, lost: String, deadline: Instant) -> StoreError {
    let until = deadline.min(Instant::now() + core.config.election_timeout_max);
    loop {
        if let Err(why) = core.quorum() {
            return StoreError::OutcomeUnknown(why);
        }
        let now = Instant::now();
        if now >= until {
            return StoreError::OutcomeUnknown(lost);
        }
        tokio::time::sleep((core.config.heartbeat_interval / 2).min(until - now)).await;
    }
}
