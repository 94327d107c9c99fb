//! The ceiling for any HTTP service on this machine with this stack: an axum server that
//! answers `GET /hello` with a small JSON body and nothing else, on a multi-threaded tokio
//! runtime like Tiketi's. Point the load generator at it to see how many requests per
//! second the machine can serve (and the generator issue) before any ticketing happens.
//!
//! `cargo run --release -p tiketi-benches --bin hello -- [port]` (default 8091).

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(8091);
    let app = Router::new().route(
        "/hello",
        get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], r#"{"hello":"world"}"#) }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("hello: http://127.0.0.1:{port}/hello");
    axum::serve(listener, app).await
}
