//! `GET /admin/cluster`: the cluster as this node sees it: members and their health, the
//! ring (which member placement gives each shard), each shard's owner, epoch and lease,
//! and the live events per node.

use crate::error::ApiError;
use crate::extract::AdminUser;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tiketi_cluster::MemberStatus;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The cluster routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster))
}

/// A member of the cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberDto {
    /// Its id (the pod name in Kubernetes).
    pub node_id: String,
    /// Where other nodes forward to.
    pub address: String,
    /// Its heartbeat is within the lease.
    pub alive: bool,
    /// It is shutting down and takes no shards.
    pub leaving: bool,
    /// Milliseconds since its last heartbeat (database clock).
    pub heartbeat_age_ms: i64,
    /// Event actors live on it at its last heartbeat.
    pub live_events: u32,
    /// Shards it owns with a running lease.
    pub shards_owned: usize,
    /// Shards placement gives it (they move to it when free).
    pub shards_placed: usize,
}

/// One virtual shard.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardDto {
    /// The shard (0..shardCount).
    pub shard: u16,
    /// Its owner of record.
    pub owner: Option<String>,
    /// Its fencing epoch: goes up by one every time a node takes it.
    pub epoch: u64,
    /// Milliseconds its lease has left (negative: lapsed).
    pub lease_left_ms: i64,
    /// The member rendezvous hashing gives it to.
    pub placed: Option<String>,
}

/// The cluster as this node sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDto {
    /// Whether this node is one of a cluster (`cluster.enabled`).
    pub enabled: bool,
    /// This node.
    pub node_id: String,
    /// It serves: joined, heartbeat within the lease, not leaving.
    pub ready: bool,
    /// It is shutting down.
    pub leaving: bool,
    /// Milliseconds since this node's last successful heartbeat.
    pub last_heartbeat_ms: Option<u64>,
    /// Event actors live on this node now.
    pub live_events: usize,
    /// Virtual shards (fixed).
    pub shard_count: u16,
    /// Every member, live or not.
    pub members: Vec<MemberDto>,
    /// Every shard.
    pub shards: Vec<ShardDto>,
}

/// The cluster: members, ring, shard owners and epochs, live events per node.
#[utoipa::path(get, path = "/admin/cluster", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ClusterDto), (status = 403, description = "not an admin")))]
async fn cluster(State(state): State<AppState>, _: AdminUser) -> Result<Json<ClusterDto>, ApiError> {
    let live_events = state.directory().live_events().len();
    let Some(cluster) = state.cluster() else {
        return Ok(Json(ClusterDto {
            enabled: false,
            node_id: "local".into(),
            ready: !state.is_draining(),
            leaving: state.is_draining(),
            last_heartbeat_ms: None,
            live_events,
            shard_count: tiketi_cluster::SHARDS,
            members: Vec::new(),
            shards: Vec::new(),
        }));
    };
    let status = cluster.status();
    Ok(Json(ClusterDto {
        enabled: true,
        node_id: status.node_id,
        ready: status.ready,
        leaving: status.leaving,
        last_heartbeat_ms: status.last_heartbeat_ms,
        live_events,
        shard_count: tiketi_cluster::SHARDS,
        members: status
            .members
            .into_iter()
            .map(|MemberStatus { member: m, shards_owned, shards_placed }| MemberDto {
                node_id: m.node_id,
                address: m.address,
                alive: m.alive,
                leaving: m.leaving,
                heartbeat_age_ms: m.heartbeat_age_ms,
                live_events: m.live_events,
                shards_owned,
                shards_placed,
            })
            .collect(),
        shards: status
            .shards
            .into_iter()
            .map(|s| ShardDto {
                shard: s.shard,
                owner: s.owner,
                epoch: s.epoch,
                lease_left_ms: s.lease_left_ms,
                placed: s.placed,
            })
            .collect(),
    }))
}
