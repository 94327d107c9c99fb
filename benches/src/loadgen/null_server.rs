//! A trivial HTTP/1.1 server that answers every request at once with `200 {}`: a target for
//! measuring what the generator itself can issue (`loadgen null-server`, then `loadgen
//! browse --event x --base-url ...` against it). It reads requests with keep-alive and
//! `Content-Length` bodies, which is all the generator sends; nothing else about HTTP.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";

/// Serves on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(connection(socket));
    }
}

async fn connection(mut socket: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // Answer every complete request in the buffer (pipelined ones included).
        while let Some((head, body)) = request_len(&buf) {
            if buf.len() < head + body {
                break;
            }
            buf.drain(..head + body);
            socket.write_all(RESPONSE).await?;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the first request's head (through the blank line) and its body, once the
/// head is complete.
fn request_len(buf: &[u8]) -> Option<(usize, usize)> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?;
    let body = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    Some((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lengths_come_from_the_head() {
        assert_eq!(request_len(b"GET / HTTP/1.1\r\nhost: x\r\n"), None);
        assert_eq!(request_len(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"), Some((27, 0)));
        let post = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(request_len(post), Some((post.len() - 5, 5)));
    }

    #[tokio::test]
    async fn it_answers_requests_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let res = client.post(format!("http://{addr}/x")).body("{\"a\":1}").send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.text().await.unwrap(), "{}");
        }
        server.abort();
    }
}
