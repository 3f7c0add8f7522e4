//! A client for the example inference server (`server.py` beside this
//! file), shared by the test harnesses of `runtime/` and `shim/` (each
//! includes this file with `#[path]`): HTTP/1.0 on loopback, std and
//! serde_json only.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One HTTP/1.0 exchange; the status and the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

fn json_call(port: u16, method: &str, path: &str, body: &str) -> Result<Value, String> {
    let (status, body) = http(port, method, path, body)?;
    if status != 200 {
        return Err(format!("{method} {path}: HTTP {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{method} {path}: bad JSON {e}: {body}"))
}

/// An /embed answer: the vectors and the request counter.
#[derive(Debug, PartialEq)]
pub struct Embedding {
    pub vectors: Vec<Vec<f64>>,
    pub count: u64,
}

pub fn embed(port: u16, texts: &[&str]) -> Result<Embedding, String> {
    let v = json_call(
        port,
        "POST",
        "/embed",
        &serde_json::json!({ "texts": texts }).to_string(),
    )?;
    let vectors: Vec<Vec<f64>> = serde_json::from_value(v["embeddings"].clone())
        .map_err(|e| format!("embeddings: {e} in {v}"))?;
    if vectors.len() != texts.len() || vectors.iter().any(|e| e.len() != 384) {
        return Err(format!("want {} vectors of 384, got {v}", texts.len()));
    }
    let count = v["count"].as_u64().ok_or("no count")?;
    Ok(Embedding { vectors, count })
}

/// /health: requests, heartbeats, pid, threads.
pub fn health(port: u16) -> Result<Value, String> {
    json_call(port, "GET", "/health", "")
}

/// The heartbeat count /health reports.
pub fn heartbeats(port: u16) -> Result<u64, String> {
    health(port)?["heartbeats"]
        .as_u64()
        .ok_or_else(|| "no heartbeats in /health".to_string())
}

/// Polls until /embed answers (10 ms apart), up to TIMEOUT.
pub fn wait_embed(port: u16, texts: &[&str], timeout: Duration) -> Result<Embedding, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match embed(port, texts) {
            Ok(e) => return Ok(e),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(10)),
        }
    }
}
