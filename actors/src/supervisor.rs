//! The supervisor of all event actors: when one fails or stops, it forgets the actor so the
//! next request for that event activates a fresh one from the store.

use crate::directory::Registry;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::sync::Arc;

/// Supervises every event actor of this node.
pub(crate) struct EventSupervisor;

impl Actor for EventSupervisor {
    type Msg = ();
    type State = Arc<Registry>;
    type Arguments = Arc<Registry>;

    async fn pre_start(&self, _: ActorRef<()>, registry: Arc<Registry>) -> Result<Arc<Registry>, ActorProcessingErr> {
        Ok(registry)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        registry: &mut Arc<Registry>,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(who, error) => {
                let event_id = registry.forget(who.get_id());
                // Logged once here, at the boundary; the next request re-activates it.
                tracing::error!(?event_id, error = %error, "event actor failed; it will be re-activated on next use");
            }
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                let event_id = registry.forget(who.get_id());
                tracing::info!(?event_id, ?reason, "event actor stopped");
            }
            _ => {}
        }
        Ok(())
    }
}
