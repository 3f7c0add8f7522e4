//! Events to containerd: one thread forwards them, in the order they were
//! raised, to containerd's ttrpc events service (`TTRPC_ADDRESS`).
//!
//! Besides containerd's task events, the shim says how a container with a
//! snapshot annotation started, on the topic `/snaprun/restore`. containerd
//! has no event type of its own for that, so the payload is a
//! `containerd.events.ContainerUpdate` (which every containerd client can
//! decode) whose labels carry the outcome:
//! `io.snaprun.restore` = `restored` | `cold` | `failed`,
//! `io.snaprun.snapshot` = NAME:TAG, `io.snaprun.reason` = why.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::events::container::ContainerUpdate;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context::with_duration;

/// The topic of restore-on-create outcomes.
pub const RESTORE_TOPIC: &str = "/snaprun/restore";
pub const OUTCOME_LABEL: &str = "io.snaprun.restore";
pub const REASON_LABEL: &str = "io.snaprun.reason";
pub const SNAPSHOT_LABEL: &str = "io.snaprun.snapshot";

/// How long one forward to containerd may take.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

enum Queued {
    Event(String, Box<dyn MessageDyn>),
    /// Answered once every event queued before it went out.
    Flush(Sender<()>),
}

/// The shim's queue of events for containerd.
pub struct Events {
    tx: Mutex<Sender<Queued>>,
}

impl Events {
    /// Starts the forwarding thread.
    pub fn start(publisher: RemotePublisher, namespace: String) -> Self {
        let (tx, rx) = channel::<Queued>();
        thread::spawn(move || {
            for q in rx {
                match q {
                    Queued::Event(topic, event) => {
                        let ctx = with_duration(PUBLISH_TIMEOUT);
                        if let Err(e) = publisher.publish(ctx, &topic, &namespace, event) {
                            tracing::warn!(topic, error = %e, "publish to containerd failed");
                        }
                    }
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Events { tx: Mutex::new(tx) }
    }

    fn queue(&self, topic: String, event: Box<dyn MessageDyn>) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(Queued::Event(topic.clone(), event)).is_err() {
            tracing::warn!(topic, "the event thread is gone");
        }
    }

    /// Waits until every event queued so far went out (or TIMEOUT passed):
    /// before the shim exits, or answers an error after which containerd
    /// ends it.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = channel();
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.send(Queued::Flush(done_tx)).is_ok()
        };
        if sent && done_rx.recv_timeout(timeout).is_err() {
            tracing::warn!("events still queued after {timeout:?}");
        }
    }

    /// Queues one of containerd's task events.
    pub fn publish<E: Event + MessageDyn + 'static>(&self, event: E) {
        let topic = event.topic();
        tracing::debug!(topic, "event");
        self.queue(topic, Box::new(event));
    }

    /// Queues a restore-on-create outcome.
    pub fn restore_outcome(&self, container: &str, snapshot: &str, outcome: Outcome, reason: &str) {
        let mut e = ContainerUpdate {
            id: container.to_string(),
            ..Default::default()
        };
        e.labels
            .insert(OUTCOME_LABEL.into(), outcome.label().into());
        e.labels.insert(SNAPSHOT_LABEL.into(), snapshot.into());
        if !reason.is_empty() {
            e.labels.insert(REASON_LABEL.into(), reason.into());
        }
        self.queue(RESTORE_TOPIC.into(), Box::new(e));
    }
}

/// How a container with a snapshot annotation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Restored,
    /// Started normally (`io.snaprun.fallback=cold`).
    Cold,
    /// Not started.
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Restored => "restored",
            Outcome::Cold => "cold",
            Outcome::Failed => "failed",
        }
    }
}
