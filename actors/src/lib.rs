//! Tiketi's actors: one [`EventActor`](event_actor) per live event, owning its seat map in
//! memory and deciding every hold; the [`Directory`] that activates an event's actor on
//! first use and is the one seam that knows where an event's actor lives; the typed
//! [`EventHandle`] callers use; and the supervisor that lets a failed actor be re-activated
//! by the next request.
//!
//! Depends on the engine and the persistence interface; must never depend on the HTTP
//! facade.
#![forbid(unsafe_code)]

mod clock;
mod directory;
mod error;
mod event_actor;
mod handle;
mod stream;
mod supervisor;
mod views;

pub use clock::Clock;
pub use directory::{ActorConfig, Directory, Placement, Runtime};
pub use error::ActorError;
pub use handle::{
    Caller, CancelCmd, ConfirmCmd, EventHandle, EventPatch, HoldCmd, IdempotencyKey, PrepareCmd, Provider, RefundCmd,
    SelectionInput, SetStatusCmd, SettleOwedCmd,
};
pub use stream::{Frame, FrameSink, Notice, Resume, Snapshot, Start, StreamConfig, Subscription};
pub use views::{ActorInfo, EventView, SeatEntry, SeatsSnapshot};
