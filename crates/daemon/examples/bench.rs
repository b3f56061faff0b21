//! Load generator for `scripts/bench-confdb`: latencies of gets and durable sets through a
//! daemon socket over one kept-alive connection, then set throughput from several clients
//! (one thread and connection each). Prints one JSON object.
//!
//!     bench SOCKET [GETS] [SETS] [CLIENTS] [SECONDS] [TOTAL_WRITES]
//!
//! After the timed parts it keeps writing until TOTAL_WRITES (default 10,000) writes were
//! made, so that the caller can measure the daemon's memory after that many.
//!
//! Expects the network schema of `tests/network.yaml` to be added already.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn connect(socket: &Path) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn call(sender: &mut SendRequest<Full<Bytes>>, method: Method, path: &str, body: String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cairn")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

const VIEW: &str = "/v1/views/acme/network/control-tunnel";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let socket = PathBuf::from(std::env::args().nth(1).expect("usage: bench SOCKET ..."));
    let (gets, sets, clients, seconds) = (arg(2, 20_000), arg(3, 1_000), arg(4, 8), arg(5, 5));
    let target = arg(6, 10_000);
    let (get_lat, set_lat) = runtime().block_on(async {
        let mut sender = connect(&socket).await;
        call(
            &mut sender,
            Method::PUT,
            VIEW,
            r#"{"peers":["10.0.0.1"],"interface":"eth0"}"#.into(),
        )
        .await;
        let mut get_lat = Vec::new();
        for _ in 0..gets {
            let t = Instant::now();
            call(
                &mut sender,
                Method::GET,
                &format!("{VIEW}?key=peers"),
                String::new(),
            )
            .await;
            get_lat.push(t.elapsed());
        }
        let mut set_lat = Vec::new();
        for i in 0..sets {
            let t = Instant::now();
            let body = format!(r#"{{"interface":"eth{i}"}}"#);
            call(&mut sender, Method::PUT, VIEW, body).await;
            set_lat.push(t.elapsed());
        }
        (get_lat, set_lat)
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let mut sender = connect(&socket).await;
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        let body = format!(r#"{{"interface":"c{c}-{done}"}}"#);
                        call(&mut sender, Method::PUT, VIEW, body).await;
                        done += 1;
                    }
                    done
                })
            })
        })
        .collect();
    let started = Instant::now();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let mut writes = 1 + sets + total;
    if writes < target {
        let more = target - writes;
        runtime().block_on(async {
            let mut sender = connect(&socket).await;
            for i in 0..more {
                call(
                    &mut sender,
                    Method::PUT,
                    VIEW,
                    format!(r#"{{"interface":"f{i}"}}"#),
                )
                .await;
            }
        });
        writes = target;
    }
    let (mut g, mut s) = (get_lat, set_lat);
    g.sort();
    s.sort();
    let report = serde_json::json!({
        "get_p50_us": percentile(&g, 0.5),
        "get_p99_us": percentile(&g, 0.99),
        "set_p50_us": percentile(&s, 0.5),
        "set_p99_us": percentile(&s, 0.99),
        "clients": clients,
        "sets_per_s": total as f64 / elapsed,
        "writes": writes,
    });
    println!("{report}");
}
