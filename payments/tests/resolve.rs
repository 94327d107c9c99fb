//! `confirm_resolved` and `cancel_resolved` against a provider that answers from a script.

use std::collections::VecDeque;
use std::sync::Mutex;

use tiketi_payments::{
    ConfirmRequest, PaymentProvider, ProviderError, ProviderPayment, ProviderStatus, cancel_resolved, codes,
    confirm_resolved,
};

type Answer = Result<ProviderPayment, ProviderError>;
type Lookup = Result<Option<ProviderPayment>, ProviderError>;

/// Answers each call with the next scripted answer, and counts the lookups.
struct Scripted {
    confirm: Mutex<VecDeque<Answer>>,
    cancel: Mutex<VecDeque<Answer>>,
    lookups: Mutex<VecDeque<Lookup>>,
    lookups_made: Mutex<u32>,
}

impl Scripted {
    fn new(confirm: Vec<Answer>, cancel: Vec<Answer>, lookups: Vec<Lookup>) -> Self {
        Self {
            confirm: Mutex::new(confirm.into()),
            cancel: Mutex::new(cancel.into()),
            lookups: Mutex::new(lookups.into()),
            lookups_made: Mutex::new(0),
        }
    }

    fn lookups_made(&self) -> u32 {
        *self.lookups_made.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn confirm(&self, _req: &ConfirmRequest) -> Answer {
        self.confirm.lock().unwrap().pop_front().expect("a scripted confirm")
    }

    async fn cancel(&self, _payment_key: &str, _reason: &str, _idempotency_key: &str) -> Answer {
        self.cancel.lock().unwrap().pop_front().expect("a scripted cancel")
    }

    async fn payment_for_order(&self, _order_id: &str) -> Lookup {
        *self.lookups_made.lock().unwrap() += 1;
        self.lookups.lock().unwrap().pop_front().expect("a scripted lookup")
    }
}

fn request() -> ConfirmRequest {
    ConfirmRequest { payment_key: "pk".to_owned(), order_id: "order".to_owned(), amount: 5_000 }
}

fn payment(key: &str, status: ProviderStatus) -> ProviderPayment {
    ProviderPayment {
        payment_key: key.to_owned(),
        order_id: "order".to_owned(),
        status,
        total_amount: 5_000,
        method: None,
        approved_at: None,
    }
}

fn unknown() -> ProviderError {
    ProviderError::Unknown("timed out".to_owned())
}

fn declined(code: &str) -> ProviderError {
    ProviderError::declined(code, "refused")
}

fn code<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> String {
    match result {
        Err(ProviderError::Declined { code, .. }) => code,
        other => panic!("expected a decline, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_confirm_found_done_is_captured() {
    let done = payment("pk", ProviderStatus::Done);
    let provider = Scripted::new(vec![Err(unknown())], vec![], vec![Err(unknown()), Ok(Some(done.clone()))]);
    assert_eq!(confirm_resolved(&provider, &request()).await, Ok(done));
    assert_eq!(provider.lookups_made(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_confirm_whose_lookups_all_fail_stays_unknown() {
    let provider =
        Scripted::new(vec![Err(unknown())], vec![], vec![Err(unknown()), Err(declined("X")), Err(unknown())]);
    assert!(matches!(confirm_resolved(&provider, &request()).await, Err(ProviderError::Unknown(_))));
    assert_eq!(provider.lookups_made(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_confirm_that_ended_without_a_capture_is_not_captured() {
    // "Already processed" is an answer: no payment for this order means not with this key.
    let provider = Scripted::new(vec![Err(declined(codes::ALREADY_PROCESSED_PAYMENT))], vec![], vec![Ok(None)]);
    assert_eq!(code(confirm_resolved(&provider, &request()).await), codes::NOT_CAPTURED);

    let aborted = Some(payment("pk", ProviderStatus::Aborted));
    let provider = Scripted::new(vec![Err(declined(codes::ALREADY_PROCESSED_PAYMENT))], vec![], vec![Ok(aborted)]);
    assert_eq!(code(confirm_resolved(&provider, &request()).await), codes::NOT_CAPTURED);

    let someone_else = Some(payment("pk-other", ProviderStatus::Done));
    let provider = Scripted::new(vec![Err(unknown())], vec![], vec![Ok(someone_else)]);
    assert_eq!(code(confirm_resolved(&provider, &request()).await), codes::NOT_CAPTURED);
}

#[tokio::test(start_paused = true)]
async fn an_order_the_provider_does_not_know_yet_is_asked_again_and_stays_unknown() {
    // The confirm may still be on its way: a capture that shows up on a later look counts.
    let done = payment("pk", ProviderStatus::Done);
    let provider = Scripted::new(vec![Err(unknown())], vec![], vec![Ok(None), Ok(Some(done.clone()))]);
    assert_eq!(confirm_resolved(&provider, &request()).await, Ok(done));

    let provider = Scripted::new(vec![Err(unknown())], vec![], vec![Ok(None), Ok(None), Ok(None)]);
    assert!(matches!(confirm_resolved(&provider, &request()).await, Err(ProviderError::Unknown(_))));
    assert_eq!(provider.lookups_made(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_confirm_still_in_progress_is_asked_again_and_never_called_not_captured() {
    let in_progress = || Ok(Some(payment("pk", ProviderStatus::InProgress)));
    let done = payment("pk", ProviderStatus::Done);
    let provider = Scripted::new(vec![Err(unknown())], vec![], vec![in_progress(), Ok(Some(done.clone()))]);
    assert_eq!(confirm_resolved(&provider, &request()).await, Ok(done));

    let provider = Scripted::new(vec![Err(unknown())], vec![], vec![in_progress(), in_progress(), in_progress()]);
    assert!(matches!(confirm_resolved(&provider, &request()).await, Err(ProviderError::Unknown(_))));
    assert_eq!(provider.lookups_made(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_declined_confirm_is_returned_without_a_lookup() {
    let provider = Scripted::new(vec![Err(declined(codes::REJECT_CARD_PAYMENT))], vec![], vec![]);
    assert_eq!(code(confirm_resolved(&provider, &request()).await), codes::REJECT_CARD_PAYMENT);
    assert_eq!(provider.lookups_made(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_cancel_is_canceled_once_the_lookup_says_so_and_unknown_while_done() {
    let done = || Ok(Some(payment("pk", ProviderStatus::Done)));
    let canceled = payment("pk", ProviderStatus::Canceled);
    let provider = Scripted::new(vec![], vec![Err(unknown())], vec![done(), Ok(Some(canceled.clone()))]);
    assert_eq!(cancel_resolved(&provider, "pk", "order", "r", "k").await, Ok(canceled));

    let provider = Scripted::new(vec![], vec![Err(unknown())], vec![done(), done(), done()]);
    assert!(matches!(cancel_resolved(&provider, "pk", "order", "r", "k").await, Err(ProviderError::Unknown(_))));
    assert_eq!(provider.lookups_made(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_already_canceled_payment_resolves_to_the_canceled_payment() {
    let canceled = payment("pk", ProviderStatus::Canceled);
    let refusal = || Err(declined(codes::ALREADY_CANCELED_PAYMENT));
    let provider = Scripted::new(vec![], vec![refusal()], vec![Ok(Some(canceled.clone()))]);
    assert_eq!(cancel_resolved(&provider, "pk", "order", "r", "k").await, Ok(canceled));

    let provider = Scripted::new(vec![], vec![refusal()], vec![Err(unknown()), Err(unknown()), Err(unknown())]);
    assert!(matches!(cancel_resolved(&provider, "pk", "order", "r", "k").await, Err(ProviderError::Unknown(_))));
}

#[tokio::test(start_paused = true)]
async fn a_declined_cancel_is_returned_as_is() {
    let provider = Scripted::new(vec![], vec![Err(declined(codes::NOT_CANCELABLE_PAYMENT))], vec![]);
    assert_eq!(code(cancel_resolved(&provider, "pk", "order", "r", "k").await), codes::NOT_CANCELABLE_PAYMENT);
    assert_eq!(provider.lookups_made(), 0);
}
