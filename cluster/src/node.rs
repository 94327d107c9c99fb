//! The heartbeat loop: keep this node's membership and leases, take the shards placement
//! gives it, hand off the ones it should no longer own, and stop serving the ones it lost.

use crate::placement::{SHARDS, owner_of, shard_of};
use crate::{Cluster, Held};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tiketi_persistence::{Heartbeat, StoreError};
use tokio::time::Instant;

/// Cluster tuning (`[cluster]` in the configuration).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id: stable across restarts (the pod name in a StatefulSet).
    pub node_id: String,
    /// The base URL other nodes forward requests to.
    pub advertise_url: String,
    /// Redis, for ownership hints and the live stream between nodes (empty: none).
    pub redis_url: String,
    /// How often the node heartbeats and renews its leases.
    pub heartbeat: Duration,
    /// How long a heartbeat keeps a member alive and a renewal keeps a lease.
    pub lease: Duration,
}

impl ClusterConfig {
    /// How long after sending a renewal this node still serves the shard: the lease less a
    /// margin for clock-rate differences between this node and the database. The lease on
    /// the database clock started no earlier than the renewal was sent, so this ends first.
    fn serve_for(&self) -> Duration {
        self.lease.mul_f64(0.8)
    }
}

/// A member as `GET /admin/cluster` shows it.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// Its row of the members table.
    pub member: tiketi_persistence::Member,
    /// Shards it owns (with a running lease).
    pub shards_owned: usize,
    /// Shards placement gives it.
    pub shards_placed: usize,
}

/// A shard as `GET /admin/cluster` shows it.
#[derive(Debug, Clone)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u16,
    /// Its owner of record.
    pub owner: Option<String>,
    /// Its fencing epoch.
    pub epoch: u64,
    /// Milliseconds its lease has left (negative: lapsed).
    pub lease_left_ms: i64,
    /// The member placement gives it to.
    pub placed: Option<String>,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// This node.
    pub node_id: String,
    /// Ready to serve.
    pub ready: bool,
    /// Shutting down.
    pub leaving: bool,
    /// Milliseconds since this node's last successful heartbeat.
    pub last_heartbeat_ms: Option<u64>,
    /// Every member.
    pub members: Vec<MemberStatus>,
    /// Every shard.
    pub shards: Vec<ShardStatus>,
}

/// Registers this node, retrying until PostgreSQL answers.
pub(crate) async fn join(cluster: &Cluster) {
    let config = &cluster.inner.config;
    let mut backoff = Duration::from_millis(200);
    loop {
        match cluster.inner.store.join_cluster(&config.node_id, &config.advertise_url, config.lease).await {
            Ok(()) => {
                tracing::info!(node_id = %config.node_id, address = %config.advertise_url, "joined the cluster");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot join the cluster yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Heartbeats until the node leaves.
pub(crate) async fn run(cluster: Cluster) {
    let mut fenced = cluster.directory().map(|d| d.journal().stats().fenced_shards());
    loop {
        {
            let _round = cluster.inner.rounds.lock().await;
            if cluster.is_leaving() {
                return;
            }
            tick(&cluster).await;
        }
        let sleep = tokio::time::sleep(cluster.inner.config.heartbeat);
        tokio::select! {
            () = sleep => {}
            () = cluster.inner.wake.notified() => {}
            // A write was fenced: the heartbeat finds out which shards were lost.
            Ok(shards) = async { match fenced.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                tracing::warn!(?shards, "writes fenced; checking leases now");
            }
        }
    }
}

/// One round: heartbeat and renew, stop serving what was lost, hand off what should move,
/// take what placement gives this node.
async fn tick(cluster: &Cluster) {
    let inner = &cluster.inner;
    let held: Vec<(u16, u64)> = cluster.view().owned.iter().map(|(&s, h)| (s, h.epoch)).collect();
    let live_events = cluster.directory().map_or(0, |d| d.live_events().len());
    let sent = Instant::now();
    match inner.store.heartbeat(&inner.config.node_id, &held, inner.config.lease, live_events).await {
        Ok(beat) => renewed(cluster, sent, &held, beat).await,
        Err(StoreError::NotFound) if !cluster.is_leaving() => {
            tracing::warn!("this node's member row is gone; joining again");
            join(cluster).await;
            return;
        }
        Err(e) => {
            inner.metrics.heartbeat_failures.inc();
            tracing::warn!(error = %e, "heartbeat failed");
            let now = Instant::now();
            let expired: Vec<u16> =
                cluster.view().owned.iter().filter(|(_, h)| h.valid_until <= now).map(|(&s, _)| s).collect();
            if !expired.is_empty() {
                tracing::error!(shards = expired.len(), "leases ran out without a heartbeat; no longer serving them");
                lost(cluster, &expired).await;
            }
            return;
        }
    }
    if cluster.is_leaving() {
        return;
    }
    let (give, take) = {
        let view = cluster.view();
        let me = cluster.node_id();
        let mine: HashSet<u16> =
            (0..SHARDS).filter(|&s| owner_of(s, view.placing.iter().map(String::as_str)) == Some(me)).collect();
        let give: Vec<u16> =
            view.owned.keys().copied().filter(|s| !mine.contains(s) && !view.releasing.contains(s)).collect();
        let mut take: Vec<u16> = mine.into_iter().filter(|s| !view.owned.contains_key(s)).collect();
        take.sort_unstable();
        (give, take)
    };
    if !give.is_empty() {
        hand_off(cluster, &give).await;
    }
    if !take.is_empty() {
        acquire(cluster, &take).await;
    }
}

/// Applies a heartbeat's answer.
async fn renewed(cluster: &Cluster, sent: Instant, held: &[(u16, u64)], beat: Heartbeat) {
    let inner = &cluster.inner;
    let renewed: HashSet<(u16, u64)> = beat.renewed.iter().copied().collect();
    let gone: Vec<u16> = held.iter().filter(|h| !renewed.contains(h)).map(|&(s, _)| s).collect();
    {
        let mut view = cluster.view_mut();
        let valid_until = sent + inner.config.serve_for();
        for &(shard, epoch) in &beat.renewed {
            if let Some(h) = view.owned.get_mut(&shard).filter(|h| h.epoch == epoch) {
                h.valid_until = valid_until;
            }
        }
        view.placing = beat.members.iter().filter(|m| m.alive && !m.leaving).map(|m| m.node_id.clone()).collect();
        view.members = beat.members;
        view.table = beat.shards;
        view.last_heartbeat = Some(sent);
    }
    inner.metrics.lease_renewals.inc_by(beat.renewed.len() as u64);
    if !gone.is_empty() {
        tracing::error!(?gone, "leases lost: another node took these shards");
        inner.metrics.lease_losses.inc_by(gone.len() as u64);
        lost(cluster, &gone).await;
    }
    inner.metrics.owned.set(cluster.view().owned.len() as i64);
    inner.metrics.members.set(cluster.view().placing.len() as i64);
}

/// Stops serving shards this node no longer holds (lost to another node, or its lease ran
/// out): forgotten at once, their actors stopped. Whatever they still write is fenced.
async fn lost(cluster: &Cluster, shards: &[u16]) {
    {
        let mut view = cluster.view_mut();
        for shard in shards {
            view.owned.remove(shard);
            view.releasing.remove(shard);
        }
    }
    if let Some(directory) = cluster.directory() {
        let shards: HashSet<u16> = shards.iter().copied().collect();
        directory.stop_where(|e| shards.contains(&shard_of(e)), "shard lease lost").await;
    }
}

/// Waits until the journal has committed everything handed to it so far, for at most a
/// heartbeat interval (the database may be slow or down; the caller decides what then).
async fn flushed(cluster: &Cluster) -> bool {
    match cluster.directory() {
        Some(directory) => {
            tokio::time::timeout(cluster.inner.config.heartbeat, directory.journal().flushed()).await.is_ok()
        }
        None => true,
    }
}

/// Hands shards off gracefully: stop taking requests for them (new ones are rerouted), let
/// the journal commit what their actors decided (which answers the durable replies they
/// parked), stop the actors (anything still queued is answered `Stopped` and rerouted),
/// commit what they decided meanwhile, then release the leases so the next owner need not
/// wait for them to lapse. If the database does not commit within a heartbeat interval the
/// leases are left to lapse instead: a release before the commit would let the next owner
/// load without it.
async fn hand_off(cluster: &Cluster, shards: &[u16]) {
    let inner = &cluster.inner;
    let held: Vec<(u16, u64)> = {
        let mut view = cluster.view_mut();
        view.releasing.extend(shards.iter().copied());
        shards.iter().filter_map(|s| view.owned.get(s).map(|h| (*s, h.epoch))).collect()
    };
    let mut committed = flushed(cluster).await;
    if let Some(directory) = cluster.directory() {
        let set: HashSet<u16> = shards.iter().copied().collect();
        let stopped = directory.stop_where(|e| set.contains(&shard_of(e)), "shard handed off").await;
        tracing::info!(shards = shards.len(), actors = stopped, "handing off shards");
    }
    committed = committed && flushed(cluster).await;
    if !committed {
        tracing::warn!(shards = held.len(), "the journal did not commit in time; leaving the leases to lapse");
    } else {
        match inner.store.release_shards(&inner.config.node_id, &held).await {
            Ok(_) => {
                inner.metrics.moves.released.inc_by(held.len() as u64);
            }
            // The leases lapse by themselves; the next owner waits for that instead.
            Err(e) => tracing::warn!(error = %e, "releasing shards failed; their leases will lapse"),
        }
    }
    {
        let mut view = cluster.view_mut();
        for shard in shards {
            view.owned.remove(shard);
            view.releasing.remove(shard);
        }
    }
    inner.hints.publish().await;
}

/// Takes the shards placement gives this node that nobody holds; loads nothing yet (actors
/// activate on first use), but reconciles their payments left in flight.
async fn acquire(cluster: &Cluster, shards: &[u16]) {
    let inner = &cluster.inner;
    // Taking a shard raises its epoch, which fences every write still queued under the old
    // one, this node's own included (a shard it lost while the database was away and now
    // takes back): commit those first.
    if !flushed(cluster).await {
        return;
    }
    let sent = Instant::now();
    let taken = match inner.store.acquire_shards(&inner.config.node_id, shards, inner.config.lease).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "taking shards failed");
            return;
        }
    };
    if taken.is_empty() {
        return;
    }
    {
        let mut view = cluster.view_mut();
        let valid_until = sent + inner.config.serve_for();
        for &(shard, epoch) in &taken {
            view.owned.insert(shard, Held { epoch, valid_until });
        }
    }
    inner.metrics.moves.acquired.inc_by(taken.len() as u64);
    inner.metrics.owned.set(cluster.view().owned.len() as i64);
    tracing::info!(shards = taken.len(), "took shards");
    if let Some(directory) = cluster.directory().cloned() {
        let set: HashSet<u16> = taken.iter().map(|&(s, _)| s).collect();
        tokio::spawn(async move { directory.activate_unsettled_where(|e| set.contains(&shard_of(e))).await });
    }
}

/// SIGTERM: stop taking shards, hand off every shard, leave the members table.
pub(crate) async fn leave(cluster: &Cluster) {
    let inner = &cluster.inner;
    if inner.leaving.swap(true, Ordering::AcqRel) {
        return;
    }
    inner.wake.notify_one();
    // The heartbeat loop finishes its round and stops; from here on this task owns the
    // node's shards.
    let _rounds = inner.rounds.lock().await;
    if let Err(e) = inner.store.leave_cluster(&inner.config.node_id).await {
        tracing::warn!(error = %e, "cannot mark this node as leaving");
    }
    inner.hints.publish().await;
    let owned: Vec<u16> = cluster.view().owned.keys().copied().collect();
    hand_off(cluster, &owned).await;
    if let Err(e) = inner.store.forget_member(&inner.config.node_id).await {
        tracing::warn!(error = %e, "cannot remove this node from the members");
    }
    inner.hints.publish().await;
    tracing::info!(shards = owned.len(), "left the cluster");
}

pub(crate) fn status(cluster: &Cluster) -> ClusterStatus {
    let view = cluster.view();
    let placing = || view.placing.iter().map(String::as_str);
    let shards: Vec<ShardStatus> = view
        .table
        .iter()
        .map(|row| ShardStatus {
            shard: row.shard,
            owner: row.owner.clone(),
            epoch: row.epoch,
            lease_left_ms: row.lease_left_ms,
            placed: owner_of(row.shard, placing()).map(str::to_owned),
        })
        .collect();
    let members = view
        .members
        .iter()
        .map(|m| MemberStatus {
            member: m.clone(),
            shards_owned: shards
                .iter()
                .filter(|s| s.lease_left_ms > 0 && s.owner.as_deref() == Some(&m.node_id))
                .count(),
            shards_placed: shards.iter().filter(|s| s.placed.as_deref() == Some(&m.node_id)).count(),
        })
        .collect();
    ClusterStatus {
        node_id: cluster.node_id().to_owned(),
        ready: cluster.ready_in(&view),
        leaving: cluster.is_leaving(),
        last_heartbeat_ms: view.last_heartbeat.map(|at| at.elapsed().as_millis() as u64),
        members,
        shards,
    }
}
