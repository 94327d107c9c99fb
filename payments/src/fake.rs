//! A fake Toss Payments server for tests (feature `fake`).
//!
//! [`FakeToss::start`] serves, on `127.0.0.1` and a free port, the three endpoints the [`crate::toss`] adapter
//! calls, with Toss's JSON shapes, status codes and error codes, and Basic authentication with the given secret
//! key. Every payment stays in memory. A payment key is accepted for any order on its first confirm (as if the
//! buyer authorized it in the Toss widget) and the captured amount is the one confirmed.
//!
//! The controls make the hard cases reproducible: declines, a confirm slower than the client's timeout, a
//! capture whose answer is lost, a failing cancel. The counters tell what really happened to the money.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tiketi_payments::fake::FakeToss;
//! use tiketi_payments::toss::{TossProvider, TossSettings};
//!
//! let fake = FakeToss::start("test_sk_fake").await;
//! let toss = TossProvider::new(TossSettings {
//!     base_url: fake.base_url(),
//!     secret_key: fake.secret_key().to_owned(),
//!     timeout: Duration::from_secs(5),
//! })?;
//! fake.set_hold_after_capture(Duration::from_secs(10)); // captured, then the answer is lost
//! # Ok(()) }
//! ```

mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::ProviderPayment;
use state::Shared;

/// A running fake Toss server. Dropping it shuts the server down at once: the listener closes and open
/// connections are cut, as if the provider went away.
#[derive(Debug)]
pub struct FakeToss {
    addr: SocketAddr,
    secret_key: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeToss {
    /// Starts a fake that accepts `secret_key`, on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// If no port can be bound on `127.0.0.1`.
    pub async fn start(secret_key: &str) -> FakeToss {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Toss server on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let authorization = format!("Basic {}", STANDARD.encode(format!("{secret_key}:")));
        let shared = Arc::new(Shared::new(authorization));
        let server = tokio::spawn(serve(listener, routes::router(Arc::clone(&shared))));
        FakeToss { addr, secret_key: secret_key.to_owned(), shared, server }
    }

    /// `http://127.0.0.1:{port}`, the base URL for [`crate::toss::TossSettings`].
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The secret key the fake accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The next confirm answers 400 with this code and message, and captures nothing.
    pub fn decline_next(&self, code: &str, message: &str) {
        self.shared.ledger().decline_next = Some((code.to_owned(), message.to_owned()));
    }

    /// Every confirm waits this long BEFORE capturing. A client that times out meanwhile gets no answer, and the
    /// capture still happens after the delay, like a slow real provider.
    pub fn set_confirm_delay(&self, delay: Duration) {
        self.shared.ledger().confirm_delay = delay;
    }

    /// While `true`, every confirm not captured yet waits (after its confirm delay) until this
    /// is set back to `false`, then captures: a capture that lands exactly when a test says.
    /// A client that times out meanwhile gets no answer (as with
    /// [`FakeToss::set_confirm_delay`]), and the provider has no payment for the order.
    pub fn hold_captures(&self, held: bool) {
        self.shared.captures_held.send_replace(held);
    }

    /// While `true`, every cancel (refund) request received waits, uncounted, until this is
    /// set back to `false`; then it is handled as usual: a refund request kept in flight.
    pub fn hold_cancels(&self, held: bool) {
        self.shared.cancels_held.send_replace(held);
    }

    /// Every confirm captures (status DONE, counted) and THEN waits this long before answering: with a hold
    /// longer than the client's timeout, the money is taken but the answer is lost.
    pub fn set_hold_after_capture(&self, hold: Duration) {
        self.shared.ledger().hold_after_capture = hold;
    }

    /// The next cancel answers 500 `FAILED_INTERNAL_SYSTEM_PROCESSING` and cancels nothing.
    pub fn fail_next_cancel_with_500(&self) {
        self.shared.ledger().fail_next_cancel = true;
    }

    /// While on, every cancel answers 500 `FAILED_INTERNAL_SYSTEM_PROCESSING` and cancels
    /// nothing (a provider outage that outlasts retries).
    pub fn set_fail_cancels(&self, fail: bool) {
        self.shared.ledger().fail_cancels = fail;
    }

    /// How many times money was captured for the order.
    pub fn captures(&self, order_id: &str) -> u32 {
        self.shared.ledger().captures(order_id)
    }

    /// How many times the order's payment was refunded.
    pub fn refunds(&self, order_id: &str) -> u32 {
        self.shared.ledger().refunds(order_id)
    }

    /// How many cancel (refund) requests reached the ledger, refused ones included.
    pub fn cancel_calls(&self) -> u32 {
        self.shared.ledger().cancel_calls
    }

    /// How many confirm requests got past authentication and parsing (declined ones included).
    pub fn confirm_calls(&self) -> u32 {
        self.shared.ledger().confirm_calls
    }

    /// The order's payment as the fake has it now.
    pub fn payment(&self, order_id: &str) -> Option<ProviderPayment> {
        self.shared.ledger().payment(order_id)
    }

    /// Every payment the fake has, ordered by order id.
    pub fn payments(&self) -> Vec<ProviderPayment> {
        self.shared.ledger().payments()
    }

    /// Resolves `true` as soon as the order has been captured, or `false` once `timeout` has passed without.
    pub async fn wait_for_capture(&self, order_id: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before looking, so a capture between the look and the wait still wakes us.
        let mut captured = self.shared.captured.subscribe();
        loop {
            if self.captures(order_id) > 0 {
                return true;
            }
            match tokio::time::timeout_at(deadline, captured.changed()).await {
                Ok(Ok(())) => continue,
                _ => return false,
            }
        }
    }
}

impl Drop for FakeToss {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.server.abort();
    }
}

/// Accepts connections until aborted. The connections live in a `JoinSet` owned by this task, so aborting it
/// cuts them too (`axum::serve` detaches them, and a held answer would outlive the fake).
async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    // A client hanging up mid-answer is an ordinary event for this fake.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
