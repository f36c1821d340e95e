//! What the cache of parsed views really allocates, measured with a counting global
//! allocator, against what it charges (`ViewCache::stats().bytes`: each view's
//! `MessageView::charge` plus `SLOT_OVERHEAD`). Requested sizes are counted (the allocator's
//! own headers are not). The run is one test so no other test's allocations mix in.

mod live_bytes;

use fastsmtpd::view::ViewCache;

#[global_allocator]
static ALLOCATOR: live_bytes::Counting = live_bytes::Counting;

/// A message of about 1 KiB: multipart/alternative, quoted-printable text, base64 HTML, a
/// link with a token, a code.
fn message(n: usize) -> Vec<u8> {
    format!(
        "From: Shop <shop@example.com>\r\nTo: user{n}@example.org\r\nSubject: =?UTF-8?Q?Your_code_=E2=9C=93?= {n}\r\n\
         Message-ID: <{n}@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Your verification code is {:06}. Confirm: https://shop.example/c?token=t{n}\r\n{}\r\n--b\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>Confirm <a href=3D\"https://shop.example/c?token=t{n}\">here</a></p>{}\r\n--b--\r\n",
        n % 1_000_000,
        "lorem ipsum dolor sit amet ".repeat(12),
        "<p>lorem ipsum</p>".repeat(12),
    )
    .into_bytes()
}

#[test]
fn the_cache_charges_what_its_views_allocate() {
    const VIEWS: usize = 20_000;
    let raws: Vec<Vec<u8>> = (0..VIEWS).map(message).collect();
    let before = live_bytes::live();
    let cache = ViewCache::new(usize::MAX);
    for (n, raw) in raws.iter().enumerate() {
        cache.get_or_parse(n as u64, raw);
    }
    let allocated = (live_bytes::live() - before) as f64 / VIEWS as f64;
    let stats = cache.stats();
    let charged = stats.bytes as f64 / VIEWS as f64;
    println!(
        "{VIEWS} views of {}-octet messages: allocated {allocated:.0} octets each, charged {charged:.0}",
        raws[0].len()
    );
    assert_eq!(stats.views, VIEWS);
    // The charge covers the views' own allocations; what it leaves out is the slack of the
    // map and the ring, which grow by doubling (up to a table's worth just past one).
    assert!(
        allocated <= charged * 1.25,
        "allocated {allocated:.0} > 1.25 x charged {charged:.0}"
    );
    assert!(
        charged <= allocated * 1.5,
        "charged {charged:.0} far above allocated {allocated:.0}"
    );
}
