//! The discard sink: keeps nothing. The default, for benchmarks; the session counts what was
//! accepted, so this sink has no work to do at all.

use super::{Envelope, Sink, Verdict};

/// Throws every message away (and so never fails to "store" one).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn on_message_start(&mut self, _envelope: &Envelope<'_>) {}

    fn on_message_data(&mut self, _piece: &[u8]) {}

    fn on_message_end(&mut self, _envelope: &Envelope<'_>) -> Verdict {
        Verdict::Stored
    }

    fn on_message_abort(&mut self) {}
}
