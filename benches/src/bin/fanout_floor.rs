//! A reference point for the fan-out benchmark's staleness on this machine: the same
//! traffic as `benches/fanout.rs` (10,000 loopback TCP subscribers, a frame of ~350 bytes
//! every 20 ms for each), with about the least work a sender can do and still deliver it. No server, no HTTP
//! routing, no actor, no async runtime on the sending side: one sender thread (as Tiketi's
//! stream thread) visits every socket in turn and writes what it has not had yet with one
//! `write`. Each frame carries the wall-clock time it was produced; a reader's staleness is
//! its receipt time minus that.
//!
//! The readers are either
//! - `--client bare`: two threads (as the benchmark's two client workers) on epoll (mio),
//!   one `read` per readiness, frames of fixed size, no WebSocket: the least a reader can do;
//! - `--client websocket`: the benchmark's own client, tokio-tungstenite on a tokio runtime
//!   of as many workers as cores, one task per connection, reading the frames as WebSocket
//!   text messages and scanning each for its time (the sender then does the handshake and
//!   writes WebSocket frames).
//!
//! These are reference points, not proven lower bounds: they are what one thread sweeping
//! the sockets in a fixed order achieves when each visit costs only the kernel's work of
//! sending over loopback (and waking the reader), on the same cores as the readers. A
//! server doing its own work per visit should expect more; `bare` also takes the client's
//! work away. Tiketi's frames wait a tick before they are made (a frame's `at` is the time
//! of the change that started it), so the table adds the tick. This sender makes a frame
//! every tick for every subscriber; Tiketi makes one only when something changed (~42 a
//! second in the benchmark against 50 here at a 20 ms tick), so this carries more frames.
//!
//! `cargo run --release -p tiketi-benches --bin fanout_floor -- [--client websocket]
//! [--subscribers 10000] [--tick-ms 20]`. The sender is a child process (this binary, with
//! `--send`), as Tiketi's server is in the benchmark, so each process stays within
//! `ulimit -n`.

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiketi_benches::machine::{cpu_seconds, loadavg, nproc};
use tiketi_benches::report::percentile;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes of a frame's payload: about one `seats` message of the benchmark (200 holds/s of
/// 2 seats).
const FRAME: usize = 350;
const BARE_READERS: usize = 2;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURED: Duration = Duration::from_secs(10);
/// Most frames a visit writes to one socket (as the server's `MAX_BATCH`).
const MAX_BATCH: u64 = 64;
/// The WebSocket clients' read buffer and connect concurrency, as the benchmark's.
const READ_BUFFER: usize = 8 * 1024;
const CONNECT_CONCURRENCY: usize = 500;
/// Where a WebSocket frame's payload gives its time: `{"at":` then 16 digits (microseconds).
const AT: &str = r#"{"type":"seats","at":"#;

#[derive(Parser)]
#[command(
    about = "A reference point for the fan-out benchmark's staleness: its traffic from a sender that only writes"
)]
struct Cli {
    /// Who reads the frames.
    #[arg(long, value_enum, default_value_t = Client::Bare)]
    client: Client,
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// A frame is made for every subscriber this often.
    #[arg(long, default_value_t = 20)]
    tick_ms: u64,
    /// Run as the sender (the child process).
    #[arg(long, hide = true)]
    send: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    /// Bare sockets on epoll, fixed-size frames.
    Bare,
    /// The fan-out benchmark's WebSocket client.
    Websocket,
}

fn main() {
    let cli = Cli::parse();
    if cli.send {
        send(&cli);
    } else {
        read(&cli);
    }
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

// ---------------------------------------------------------------------------------------
// The sender (child process)

/// Accepts the subscribers (the port goes to stdout; a WebSocket client gets its handshake
/// answered), waits for a line on stdin, then makes a frame every tick and writes each
/// socket what it has not had, socket after socket, until the run's time is up; then prints
/// how many writes it made in the measured window.
fn send(cli: &Cli) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listening socket");
    println!("{}", listener.local_addr().expect("its address").port());
    let mut sockets = Vec::with_capacity(cli.subscribers);
    for _ in 0..cli.subscribers {
        let (mut socket, _) = listener.accept().expect("a subscriber");
        if cli.client == Client::Websocket {
            handshake(&mut socket);
        }
        // As the server's accepted connections.
        socket.set_nodelay(true).expect("TCP_NODELAY");
        socket.set_nonblocking(true).expect("non-blocking");
        sockets.push(socket);
    }
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("the go line");

    let start = Instant::now();
    let start_micros = now_micros();
    let tick = Duration::from_millis(cli.tick_ms);
    let tick_micros = tick.as_micros() as u64;
    // Per socket: the next frame it needs, and bytes a short write left behind.
    let mut next = vec![0u64; sockets.len()];
    let mut left: Vec<Vec<u8>> = vec![Vec::new(); sockets.len()];
    let mut buf = Vec::with_capacity((FRAME + 4) * MAX_BATCH as usize);
    let websocket = cli.client == Client::Websocket;
    let end = WARMUP + MEASURED + Duration::from_secs(2);
    let measured = WARMUP..WARMUP + MEASURED;
    let mut writes = 0u64;
    while start.elapsed() < end {
        let counted = measured.contains(&start.elapsed());
        let mut wrote = false;
        let mut waiting = false;
        let mut produced = 0;
        for (i, socket) in sockets.iter_mut().enumerate() {
            if !left[i].is_empty() {
                writes += u64::from(counted);
                match socket.write(&left[i]) {
                    Ok(n) => {
                        left[i].drain(..n);
                        wrote = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The reader is gone (the window is over): this socket is done.
                    Err(_) => {
                        left[i].clear();
                        next[i] = u64::MAX;
                    }
                }
                if !left[i].is_empty() {
                    waiting = true;
                    continue;
                }
            }
            // Frames 0..produced exist: frame k at start + k ticks. Each visit writes all
            // there are by then, as a connection woken for each frame would.
            produced = (start.elapsed().as_micros() as u64) / tick_micros + 1;
            if next[i] >= produced {
                continue;
            }
            // At most a batch a visit; the rest waits for the next (as the server's
            // `MAX_BATCH`).
            let upto = produced.min(next[i] + MAX_BATCH);
            buf.clear();
            for k in next[i]..upto {
                frame(start_micros + k * tick_micros, websocket, &mut buf);
            }
            next[i] = upto;
            wrote = true;
            writes += u64::from(counted);
            match socket.write(&buf) {
                Ok(n) if n < buf.len() => left[i] = buf[n..].to_vec(),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => left[i] = buf.clone(),
                Err(_) => next[i] = u64::MAX,
            }
        }
        if !wrote {
            // Nothing went out: wait for the next frame, or briefly for blocked sockets.
            let due = if waiting { Instant::now() + Duration::from_millis(1) } else { start + tick * produced as u32 };
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    println!("{writes}");
}

/// Answers a WebSocket opening handshake (RFC 6455 §4.2.2) on a blocking socket.
fn handshake(socket: &mut std::net::TcpStream) {
    let mut request = Vec::new();
    let mut byte = [0u8];
    while !request.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).expect("the upgrade request");
        request.push(byte[0]);
    }
    let request = String::from_utf8(request).expect("a UTF-8 request");
    let key = request
        .lines()
        .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key")))
        .map(|(_, key)| key.trim())
        .expect("a Sec-WebSocket-Key");
    let accept = derive_accept_key(key.as_bytes());
    write!(
        socket,
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .expect("the handshake's answer");
}

/// Appends a frame made at `micros`: [`FRAME`] bytes starting with the time (little-endian),
/// or a WebSocket text frame of that size whose JSON starts with [`AT`] and the time.
fn frame(micros: u64, websocket: bool, buf: &mut Vec<u8>) {
    let start = buf.len();
    if websocket {
        // FIN + text; a 16-bit length.
        buf.extend_from_slice(&[0x81, 126]);
        buf.extend_from_slice(&(FRAME as u16).to_be_bytes());
        let body = buf.len();
        write!(buf, "{AT}{micros:016},\"changes\":\"").expect("writing to a Vec");
        buf.resize(body + FRAME - 2, b'x');
        buf.extend_from_slice(b"\"}");
    } else {
        buf.extend_from_slice(&micros.to_le_bytes());
        buf.resize(start + FRAME, b'x');
    }
}

// ---------------------------------------------------------------------------------------
// The readers (this process)

/// Staleness of each frame received in the measured window, in microseconds.
type Staleness = Vec<u32>;

fn read(cli: &Cli) {
    println!("# fan-out reference: one bare sender thread over loopback TCP");
    println!();
    println!("machine: nproc = {}; load at start (/proc/loadavg): {}", nproc(), loadavg());
    let readers = match cli.client {
        Client::Bare => format!("{BARE_READERS} reader threads on epoll, bare frames"),
        Client::Websocket => format!("the benchmark's WebSocket client on {} tokio workers", nproc()),
    };
    println!(
        "{} subscribers, a {FRAME}-byte frame every {} ms for each; 1 sender thread (child process); {readers}; \
         {} s warm-up, {} s measured",
        cli.subscribers,
        cli.tick_ms,
        WARMUP.as_secs(),
        MEASURED.as_secs()
    );
    let exe = std::env::current_exe().expect("this binary");
    let client = cli.client.to_possible_value().expect("a named value").get_name().to_owned();
    let mut sender = Command::new(exe)
        .args(["--send", "--client", &client])
        .args(["--subscribers", &cli.subscribers.to_string(), "--tick-ms", &cli.tick_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sender");
    let mut sender_out = BufReader::new(sender.stdout.take().expect("its stdout"));
    let mut port = String::new();
    sender_out.read_line(&mut port).expect("its port");
    let port: u16 = port.trim().parse().expect("a port");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let readers = match cli.client {
        Client::Bare => bare_readers(port, cli.subscribers),
        Client::Websocket => runtime.block_on(websocket_readers(port, cli.subscribers)),
    };
    let go = Instant::now();
    let window = (go + WARMUP, go + WARMUP + MEASURED);
    writeln!(sender.stdin.as_mut().expect("its stdin")).expect("go");
    let readers = {
        let _runtime = runtime.enter();
        readers(window)
    };

    std::thread::sleep(WARMUP);
    let cpu = (cpu_seconds(&sender.id().to_string()), cpu_seconds("self"));
    std::thread::sleep(MEASURED);
    let seconds = MEASURED.as_secs_f64();
    let sender_cores = (cpu_seconds(&sender.id().to_string()) - cpu.0) / seconds;
    let reader_cores = (cpu_seconds("self") - cpu.1) / seconds;

    let mut staleness = runtime.block_on(readers);
    let mut writes = String::new();
    sender_out.read_line(&mut writes).expect("the sender's count of writes");
    let writes_per_s = writes.trim().parse::<f64>().expect("a count") / seconds;
    sender.wait().expect("the sender ends");
    runtime.shutdown_background();
    staleness.sort_unstable();
    assert!(!staleness.is_empty(), "frames arrived in the window");
    let frames_per_s = staleness.len() as f64 / seconds;
    let ms = |q: f64| f64::from(percentile(&staleness, q)) / 1000.0;
    println!();
    println!("| | |");
    println!("|---|---:|");
    println!("| frames delivered/s | {frames_per_s:.0} |");
    println!("| staleness p50 ms | {:.1} |", ms(0.5));
    println!("| staleness p99 ms | {:.1} |", ms(0.99));
    println!("| staleness max ms | {:.1} |", ms(1.0));
    println!("| staleness p99 ms + the tick (the benchmark's measure) | {:.1} |", ms(0.99) + cli.tick_ms as f64);
    println!("| writes/s (each a `write` call) | {writes_per_s:.0} |");
    println!("| frames per write | {:.1} |", frames_per_s / writes_per_s);
    println!("| sender CPU, cores | {sender_cores:.2} |");
    println!("| sender CPU per write, µs | {:.1} |", sender_cores * 1e6 / writes_per_s);
    println!("| readers' CPU, cores | {reader_cores:.2} |");
    println!("| readers' CPU per write, µs | {:.1} |", reader_cores * 1e6 / writes_per_s);
    println!();
    println!("load at end (/proc/loadavg): {}", loadavg());
}

/// Readers started once the window is known; what they saw comes back when it is over.
type Readers = Box<dyn FnOnce((Instant, Instant)) -> futures_util::future::BoxFuture<'static, Staleness>>;

/// Connects the bare readers' sockets; the readers are threads.
fn bare_readers(port: u16, subscribers: usize) -> Readers {
    let mut groups: Vec<Vec<TcpStream>> = (0..BARE_READERS).map(|_| Vec::new()).collect();
    for i in 0..subscribers {
        let socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("a connection");
        socket.set_nonblocking(true).expect("non-blocking");
        groups[i % BARE_READERS].push(TcpStream::from_std(socket));
    }
    Box::new(move |window| {
        let threads: Vec<_> =
            groups.into_iter().map(|sockets| std::thread::spawn(move || bare_reader(sockets, window))).collect();
        Box::pin(async move { threads.into_iter().flat_map(|t| t.join().expect("a reader")).collect() })
    })
}

/// Reads its sockets until the window ends, recording each whole frame received in it.
fn bare_reader(mut sockets: Vec<TcpStream>, (from, until): (Instant, Instant)) -> Staleness {
    let mut poll = Poll::new().expect("an epoll instance");
    for (i, socket) in sockets.iter_mut().enumerate() {
        poll.registry().register(socket, Token(i), Interest::READABLE).expect("registered");
    }
    // Per socket: bytes of the current frame read so far, and its first 8 (the time).
    let mut offset = vec![0usize; sockets.len()];
    let mut stamp = vec![[0u8; 8]; sockets.len()];
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = Staleness::new();
    while Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(50))).expect("epoll_wait");
        for event in &events {
            let i = event.token().0;
            // Edge-triggered: read until a read comes back short (the socket is drained then;
            // more data would raise a new edge).
            loop {
                let n = match sockets[i].read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("a read failed: {e}"),
                };
                let now = Instant::now();
                let received = now_micros();
                let mut data = &buf[..n];
                while !data.is_empty() {
                    let take = (FRAME - offset[i]).min(data.len());
                    if offset[i] < 8 {
                        let upto = take.min(8 - offset[i]);
                        stamp[i][offset[i]..offset[i] + upto].copy_from_slice(&data[..upto]);
                    }
                    offset[i] += take;
                    data = &data[take..];
                    if offset[i] == FRAME {
                        offset[i] = 0;
                        if now >= from && now < until {
                            seen.push(received.saturating_sub(u64::from_le_bytes(stamp[i])) as u32);
                        }
                    }
                }
                if n < buf.len() {
                    break;
                }
            }
        }
    }
    seen
}

/// Connects the WebSocket clients (as the benchmark does); each is a task.
async fn websocket_readers(port: u16, subscribers: usize) -> Readers {
    let url = format!("ws://127.0.0.1:{port}/");
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let connects: Vec<_> = (0..subscribers)
        .map(|_| {
            let (url, gate) = (url.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("never closed");
                let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(config), true)
                    .await
                    .expect("a WebSocket connection");
                ws
            })
        })
        .collect();
    let sockets = futures_util::future::join_all(connects).await;
    Box::new(move |(from, until)| {
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|ws| {
                let mut ws = ws.expect("connected");
                tokio::spawn(async move {
                    let mut seen = Staleness::new();
                    loop {
                        let message = match tokio::time::timeout_at(until.into(), ws.next()).await {
                            Ok(Some(Ok(message))) => message,
                            // The window is over.
                            Err(_) => break,
                            Ok(other) => panic!("a connection ended before the window did: {other:?}"),
                        };
                        let Message::Text(text) = message else { continue };
                        let received = now_micros();
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        let at = text.get(AT.len()..AT.len() + 16).and_then(|d| d.parse::<u64>().ok());
                        let at = at.expect("a frame starts with its time");
                        if now >= from {
                            seen.push(received.saturating_sub(at) as u32);
                        }
                    }
                    seen
                })
            })
            .collect();
        Box::pin(async move {
            let mut seen = Staleness::new();
            for task in tasks {
                seen.extend(task.await.expect("a reader"));
            }
            seen
        })
    })
}
