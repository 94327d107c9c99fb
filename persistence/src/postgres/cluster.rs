//! The cluster's tables (migration V5): membership heartbeats and shard leases, all on the
//! database clock. Only PostgreSQL carries a cluster; the embedded store is one node.

use super::{PgStore, db_err};
use crate::store::StoreError;
use std::time::Duration;

/// A node as the members table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's id (its pod name in a StatefulSet).
    pub node_id: String,
    /// Where other nodes reach it (`http://host:port`).
    pub address: String,
    /// Its heartbeat is within the lease.
    pub alive: bool,
    /// It is shutting down: it keeps what it owns until it releases it, but takes nothing.
    pub leaving: bool,
    /// Milliseconds since its last heartbeat, on the database clock.
    pub heartbeat_age_ms: i64,
    /// Event actors live on it at its last heartbeat.
    pub live_events: u32,
}

/// One shard's row of the ownership table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRow {
    /// The shard.
    pub shard: u16,
    /// Its owner, if any.
    pub owner: Option<String>,
    /// Its fencing epoch.
    pub epoch: u64,
    /// Milliseconds its lease has left (negative: lapsed).
    pub lease_left_ms: i64,
}

/// What one heartbeat learned.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Every member row.
    pub members: Vec<Member>,
    /// The shards whose lease was renewed (owner and epoch were still ours), with their epoch.
    pub renewed: Vec<(u16, u64)>,
    /// The whole ownership table.
    pub shards: Vec<ShardRow>,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn pairs(held: &[(u16, u64)]) -> (Vec<i32>, Vec<i64>) {
    held.iter().map(|&(shard, epoch)| (i32::from(shard), epoch as i64)).unzip()
}

impl PgStore {
    /// Registers this node (or re-registers it after a restart) with a fresh heartbeat.
    /// `Conflict` while another process heartbeats under the same id within `lease`: two
    /// processes with one id would take each other's shards, so the newcomer waits until
    /// the other has gone (left, or its heartbeat lapsed).
    pub async fn join_cluster(&self, node: &str, address: &str, lease: Duration) -> Result<(), StoreError> {
        let joined = self
            .client()
            .await?
            .execute(
                "INSERT INTO cluster_members (node_id, address) VALUES ($1, $2)
                 ON CONFLICT (node_id) DO UPDATE
                 SET address = EXCLUDED.address, started_at = now(), heartbeat_at = now(), leaving = false
                 WHERE cluster_members.heartbeat_at < now() - make_interval(secs => $3::float8 / 1000)",
                &[&node, &address, &millis(lease)],
            )
            .await
            .map_err(db_err)?;
        if joined == 0 {
            return Err(StoreError::Conflict(format!("a live node already uses the id {node}")));
        }
        Ok(())
    }

    /// One heartbeat, in one transaction: refreshes this node's row, renews the leases of
    /// the shards it holds at the epochs it holds them (a shard another node took is not
    /// renewed: it is lost), and reads the members and the ownership table. A member is
    /// alive while its heartbeat is younger than `lease`.
    pub async fn heartbeat(
        &self,
        node: &str,
        held: &[(u16, u64)],
        lease: Duration,
        live_events: usize,
    ) -> Result<Heartbeat, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let ms = millis(lease);
        let touched = tx
            .execute(
                "UPDATE cluster_members SET heartbeat_at = now(), live_events = $2 WHERE node_id = $1",
                &[&node, &(live_events.min(i32::MAX as usize) as i32)],
            )
            .await
            .map_err(db_err)?;
        if touched == 0 {
            // Our row was removed (an operator, or we were declared gone): come back.
            return Err(StoreError::NotFound);
        }
        let (shards, epochs) = pairs(held);
        let renewed = tx
            .query(
                "UPDATE shard_owner s SET lease_until = now() + make_interval(secs => $4::float8 / 1000)
                 FROM (SELECT o.shard FROM shard_owner o JOIN unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
                         ON o.shard = h.shard AND o.epoch = h.epoch
                       WHERE o.owner = $1 ORDER BY o.shard FOR NO KEY UPDATE OF o) AS mine
                 WHERE s.shard = mine.shard
                 RETURNING s.shard, s.epoch",
                &[&node, &shards, &epochs, &ms],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1) as u64))
            .collect();
        let members = tx
            .query(
                "SELECT node_id, address, heartbeat_at > now() - make_interval(secs => $1::float8 / 1000), leaving,
                        (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint, live_events
                 FROM cluster_members ORDER BY node_id",
                &[&ms],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| Member {
                node_id: r.get(0),
                address: r.get(1),
                alive: r.get(2),
                leaving: r.get(3),
                heartbeat_age_ms: r.get(4),
                live_events: r.get::<_, i32>(5).max(0) as u32,
            })
            .collect();
        let shards = tx
            .query(
                "SELECT shard, owner, epoch,
                        greatest(least(extract(epoch FROM lease_until - now()) * 1000, 1e12), -1e12)::bigint
                 FROM shard_owner ORDER BY shard",
                &[],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| ShardRow {
                shard: r.get::<_, i32>(0) as u16,
                owner: r.get(1),
                epoch: r.get::<_, i64>(2) as u64,
                lease_left_ms: r.get(3),
            })
            .collect();
        tx.commit().await.map_err(db_err)?;
        Ok(Heartbeat { members, renewed, shards })
    }

    /// Takes the shards among `shards` that nobody holds (no owner, or a lapsed lease, or a
    /// previous life of this node): each taken shard's epoch goes up by one, fencing out
    /// every write of its previous owner. Returns the shards taken with their new epoch.
    /// Rows are locked in shard order, as the journal's fencing check locks them.
    pub async fn acquire_shards(
        &self,
        node: &str,
        shards: &[u16],
        lease: Duration,
    ) -> Result<Vec<(u16, u64)>, StoreError> {
        let wanted: Vec<i32> = shards.iter().map(|&s| i32::from(s)).collect();
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE shard_owner s
                 SET owner = $1, epoch = s.epoch + 1, lease_until = now() + make_interval(secs => $3::float8 / 1000)
                 FROM (SELECT shard FROM shard_owner
                       WHERE shard = ANY($2) AND (owner IS NULL OR owner = $1 OR lease_until < now())
                       ORDER BY shard FOR UPDATE) AS free
                 WHERE s.shard = free.shard
                 RETURNING s.shard, s.epoch",
                &[&node, &wanted, &millis(lease)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1) as u64)).collect())
    }

    /// Gives up shards this node holds at these epochs (after flushing their writes): the
    /// next owner may take them at once instead of waiting for the lease to lapse.
    pub async fn release_shards(&self, node: &str, held: &[(u16, u64)]) -> Result<u64, StoreError> {
        let (shards, epochs) = pairs(held);
        self.client()
            .await?
            .execute(
                "UPDATE shard_owner s SET owner = NULL, lease_until = 'epoch'
                 FROM unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
                 WHERE s.shard = h.shard AND s.epoch = h.epoch AND s.owner = $1",
                &[&node, &shards, &epochs],
            )
            .await
            .map_err(db_err)
    }

    /// Marks this node as leaving: nobody places shards on it any more.
    pub async fn leave_cluster(&self, node: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("UPDATE cluster_members SET leaving = true WHERE node_id = $1", &[&node])
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Removes this node's row (after it released everything).
    pub async fn forget_member(&self, node: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("DELETE FROM cluster_members WHERE node_id = $1", &[&node])
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
