//! The line protocol between the runtime and a container's init (or an
//! exec's helper) over a socketpair:
//!
//! runtime -> init: `go PID` (id maps and cgroups done), `ok` (hooks done)
//! init -> runtime: `hooks` (run the createRuntime hooks now), `ready`
//!                  (waiting on exec.fifo), `pid N` (exec), `error MSG`

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use super::error::{Error, Result};

pub struct Channel {
    reader: BufReader<UnixStream>,
}

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) =
            UnixStream::pair().map_err(|e| Error::io("create socketpair", "(sync channel)", e))?;
        Ok((Channel::new(a), Channel::new(b)))
    }

    fn new(s: UnixStream) -> Self {
        Channel {
            reader: BufReader::new(s),
        }
    }

    pub fn send(&mut self, msg: &str) -> Result<()> {
        let line = format!("{}\n", msg.replace('\n', " "));
        self.reader
            .get_mut()
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("send on the sync channel", "(sync channel)", e))
    }

    /// The next message, or None at end of stream (the peer is gone).
    pub fn recv(&mut self) -> Result<Option<String>> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim_end_matches('\n').to_string())),
            Err(e) => Err(Error::io("read the sync channel", "(sync channel)", e)),
        }
    }

    /// Waits for MSG (any `error` reply becomes an error).
    pub fn expect(&mut self, want: &str) -> Result<String> {
        match self.recv()? {
            Some(m) if m == want || m.starts_with(&format!("{want} ")) => Ok(m),
            Some(m) => match m.strip_prefix("error ") {
                Some(e) => Err(Error::Init(e.to_string())),
                None => Err(Error::Sync(format!(
                    "unexpected message {m:?} (wanted {want:?})"
                ))),
            },
            None => Err(Error::Sync(format!("peer exited before {want:?}"))),
        }
    }
}
