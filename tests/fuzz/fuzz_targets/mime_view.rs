//! `MessageView::parse` over arbitrary bytes: never panics, lists at most `PARTS_MAX` parts,
//! and every listed part reads back (`MessageView::part`) with the size the view gave it.
#![no_main]

use fastsmtpd::view::{MessageView, PARTS_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let view = MessageView::parse(data);
    assert!(view.parts.len() <= PARTS_MAX);
    for part in &view.parts {
        let content = MessageView::part(data, part.number).expect("a listed part reads back");
        assert_eq!(content.bytes.len(), part.size, "part {}", part.number);
    }
    assert!(MessageView::part(data, view.parts.len() + 1).is_none());
    assert!(view.charge() >= std::mem::size_of::<MessageView>());
});
