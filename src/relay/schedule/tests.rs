//! The schedule's rules, checked exactly (instants are plain durations: nothing sleeps).

use super::*;
use proptest::prelude::*;

/// Seconds as a duration.
fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// A sample that moves a delay by nothing (the middle of the jitter's range).
const NO_JITTER: u64 = 1 << 63;

#[test]
fn a_retry_list_parses_in_the_units_grammar() {
    assert_eq!(
        RetryPolicy::parse_list("1s,2s,4s"),
        Ok(Backoff::List(vec![s(1), s(2), s(4)]))
    );
    assert_eq!(
        RetryPolicy::parse_list(" 500ms , 1.5m "),
        Ok(Backoff::List(vec![
            Duration::from_millis(500),
            Duration::from_secs(90)
        ]))
    );
    assert_eq!(RetryPolicy::parse_list("  "), Err(ScheduleError::EmptyList));
    let Err(ScheduleError::BadDelay(why)) = RetryPolicy::parse_list("1s,,2s") else {
        panic!("an empty item is refused");
    };
    assert!(why.contains("empty item"), "{why}");
    let Err(ScheduleError::BadDelay(why)) = RetryPolicy::parse_list("1s,5min") else {
        panic!("an unknown unit is refused");
    };
    assert!(why.contains("unknown unit \"min\""), "{why}");
    let long = vec!["1s"; RETRY_LIST_MAX + 1].join(",");
    assert_eq!(
        RetryPolicy::parse_list(&long),
        Err(ScheduleError::TooManyDelays(RETRY_LIST_MAX + 1))
    );
    assert!(RetryPolicy::parse_list(&vec!["1s"; RETRY_LIST_MAX].join(",")).is_ok());
}

#[test]
fn a_policy_refuses_zero_delays_and_lifetimes() {
    let list = |d: Vec<Duration>| Backoff::List(d);
    assert_eq!(
        RetryPolicy::new(list(vec![s(1), Duration::ZERO]), s(30)),
        Err(ScheduleError::ZeroDelay)
    );
    assert_eq!(
        RetryPolicy::new(list(vec![]), s(30)),
        Err(ScheduleError::EmptyList)
    );
    assert_eq!(
        RetryPolicy::new(list(vec![s(1)]), Duration::ZERO),
        Err(ScheduleError::ZeroLifetime)
    );
    let inverted = Backoff::Doubling {
        first: s(10),
        max: s(5),
    };
    assert_eq!(
        RetryPolicy::new(inverted, s(30)),
        Err(ScheduleError::ZeroDelay)
    );
    // Every refusal reads as a CLI error naming the flag.
    for e in [
        ScheduleError::EmptyList,
        ScheduleError::TooManyDelays(65),
        ScheduleError::ZeroDelay,
        ScheduleError::ZeroLifetime,
    ] {
        assert!(e.to_string().starts_with("--"), "{e}");
    }
}

#[test]
fn a_list_repeats_its_last_delay() {
    let policy = RetryPolicy::new(RetryPolicy::parse_list("1s,2s,4s").unwrap(), s(30)).unwrap();
    let delays: Vec<u64> = (1..=6).map(|n| policy.delay(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 4, 4, 4]);
    // Attempt 0 is read as the first (a caller's off-by-one cannot reach past the list).
    assert_eq!(policy.delay(0), s(1));
    assert_eq!(policy.delay(u32::MAX), s(4));
}

#[test]
fn the_default_doubles_from_300s_to_at_most_4000s_within_5_days() {
    let policy = RetryPolicy::postfix_like();
    let delays: Vec<u64> = (1..=7).map(|n| policy.delay(n).as_secs()).collect();
    assert_eq!(delays, [300, 600, 1200, 2400, 4000, 4000, 4000]);
    assert_eq!(policy.delay(u32::MAX), POSTFIX_MAX_DELAY);
    assert_eq!(policy.lifetime(), s(5 * 86_400));
    assert_eq!(RetryPolicy::default(), policy);
}

#[test]
fn jitter_stays_within_ten_percent_and_spans_it() {
    let d = s(100);
    assert_eq!(RetryPolicy::jittered(d, 0), s(90));
    assert_eq!(RetryPolicy::jittered(d, u64::MAX), s(110));
    assert_eq!(RetryPolicy::jittered(d, NO_JITTER), s(100));
    assert_eq!(RetryPolicy::jittered(Duration::ZERO, 12345), Duration::ZERO);
    // The largest delay a list can give does not overflow.
    let max = Duration::MAX / 2;
    assert!(RetryPolicy::jittered(max, u64::MAX) > max);
}

/// Attempt instants (in seconds) of a message that fails at every attempt, from arrival at 0.
fn attempts_until_given_up(policy: &RetryPolicy) -> Vec<u64> {
    let mut at = Duration::ZERO;
    let mut times = vec![0];
    for failed in 1.. {
        match policy.after_failure(Duration::ZERO, at, failed, NO_JITTER) {
            Next::RetryAt(next) => {
                assert!(next > at, "time moves on");
                at = next;
                times.push(at.as_secs());
            }
            Next::GiveUp => break,
        }
        assert!(failed < 10_000, "the schedule ends");
    }
    times
}

#[test]
fn a_test_schedule_tries_at_the_listed_delays_and_last_at_the_lifetime_end() {
    let policy = RetryPolicy::new(RetryPolicy::parse_list("1s,2s,4s").unwrap(), s(30)).unwrap();
    assert_eq!(
        attempts_until_given_up(&policy),
        [0, 1, 3, 7, 11, 15, 19, 23, 27, 30]
    );
}

#[test]
fn the_default_schedule_gives_up_after_five_days() {
    let times = attempts_until_given_up(&RetryPolicy::postfix_like());
    assert_eq!(&times[..6], [0, 300, 900, 2100, 4500, 8500]);
    assert_eq!(*times.last().unwrap(), 5 * 86_400);
    // Postfix's default makes about this many attempts in five days.
    assert_eq!(times.len(), 112);
}

#[test]
fn an_attempt_that_fails_after_the_lifetime_is_final() {
    let policy = RetryPolicy::new(Backoff::List(vec![s(10)]), s(30)).unwrap();
    // A slow attempt that started in time but failed after the end.
    assert_eq!(policy.after_failure(s(0), s(31), 3, 0), Next::GiveUp);
    assert_eq!(policy.after_failure(s(0), s(30), 3, 0), Next::GiveUp);
    assert_eq!(
        policy.after_failure(s(0), s(29), 3, 0),
        Next::RetryAt(s(30))
    );
    // An arrival near the end of time does not overflow.
    assert_eq!(
        policy.after_failure(Duration::MAX, Duration::MAX, 1, 0),
        Next::GiveUp
    );
}

#[test]
fn due_keys_come_out_in_time_order_and_ties_in_push_order() {
    let mut queue = DueQueue::new();
    queue.push(s(5), 'c');
    queue.push(s(1), 'a');
    queue.push(s(5), 'b');
    queue.push(s(3), 'z');
    assert_eq!(queue.len(), 4);
    assert_eq!(queue.next_due(), Some(s(1)));
    assert_eq!(queue.pop_due(s(0)), None);
    assert_eq!(queue.pop_due(s(4)), Some((s(1), 'a')));
    assert_eq!(queue.pop_due(s(4)), Some((s(3), 'z')));
    assert_eq!(queue.pop_due(s(4)), None);
    // Equal due times: 'c' was pushed before 'b' (ties are not decided by the key).
    assert_eq!(queue.pop_due(s(5)), Some((s(5), 'c')));
    assert_eq!(queue.pop_due(s(9)), Some((s(5), 'b')));
    assert!(queue.is_empty());
    assert_eq!(queue.next_due(), None);
}

#[test]
fn a_hop_backs_off_longer_after_each_failed_connection_and_recovers() {
    let policy = RetryPolicy::new(RetryPolicy::parse_list("1s,2s,4s").unwrap(), s(30)).unwrap();
    let mut hop = HopHealth::default();
    assert!(hop.is_open(s(0)));
    hop.on_connect_failed(s(10), &policy, NO_JITTER);
    assert_eq!((hop.failures(), hop.not_before()), (1, s(11)));
    assert!(!hop.is_open(s(10)));
    assert!(hop.is_open(s(11)));
    hop.on_connect_failed(s(11), &policy, NO_JITTER);
    hop.on_connect_failed(s(13), &policy, NO_JITTER);
    hop.on_connect_failed(s(17), &policy, NO_JITTER);
    assert_eq!((hop.failures(), hop.not_before()), (4, s(21)));
    hop.on_connected();
    assert_eq!(hop, HopHealth::default());
}

#[test]
fn in_order_hops_fall_back_to_the_next_and_return_to_the_first() {
    let policy = RetryPolicy::new(Backoff::List(vec![s(5)]), s(60)).unwrap();
    let mut hops = Hops::new(2, 2, HopOrder::InOrder);
    assert_eq!(hops.pick(s(0)), Pick::Hop(0));
    hops.on_opened(0);
    assert_eq!(hops.pick(s(0)), Pick::Hop(0));
    hops.on_opened(0);
    // The first is at its limit: the second takes the next connection.
    assert_eq!(hops.pick(s(0)), Pick::Hop(1));
    hops.on_opened(1);
    hops.on_opened(1);
    assert_eq!(hops.pick(s(0)), Pick::Busy);
    hops.on_closed(0);
    assert_eq!(hops.open(0), 1);
    assert_eq!(hops.pick(s(0)), Pick::Hop(0));
    // The first refuses: the second until the first's back-off ends.
    hops.health_mut(0)
        .unwrap()
        .on_connect_failed(s(1), &policy, NO_JITTER);
    hops.on_closed(1);
    assert_eq!(hops.pick(s(2)), Pick::Hop(1));
    assert_eq!(hops.pick(s(6)), Pick::Hop(0));
    // Both refuse: nothing before the earlier back-off ends.
    hops.health_mut(1)
        .unwrap()
        .on_connect_failed(s(3), &policy, NO_JITTER);
    hops.health_mut(0)
        .unwrap()
        .on_connect_failed(s(4), &policy, NO_JITTER);
    assert_eq!(hops.pick(s(5)), Pick::BackedOffUntil(s(8)));
    assert_eq!(hops.pick(s(8)), Pick::Hop(1));
    // Closing more than was opened, or an unknown hop, is harmless.
    hops.on_closed(7);
    hops.on_opened(7);
    for _ in 0..5 {
        hops.on_closed(1);
    }
    assert_eq!(hops.open(1), 0);
    assert!(hops.health_mut(7).is_none());
    assert_eq!(hops.health().len(), 2);
}

#[test]
fn spread_hops_take_turns() {
    let mut hops = Hops::new(3, 10, HopOrder::Spread);
    let picks: Vec<Pick> = (0..6).map(|_| hops.pick(s(0))).collect();
    let expected: Vec<Pick> = [0, 1, 2, 0, 1, 2].into_iter().map(Pick::Hop).collect();
    assert_eq!(picks, expected);
    // No hops is read as one (a configuration always names at least one).
    let mut one = Hops::new(0, 0, HopOrder::Spread);
    assert_eq!(one.pick(s(0)), Pick::Hop(0));
    one.on_opened(0);
    assert_eq!(one.pick(s(0)), Pick::Busy);
}

#[test]
fn a_connection_takes_a_batch_of_ready_messages_oldest_first() {
    let mut ready = ReadyQueue::new();
    for key in 1..=5u64 {
        ready.push(key);
    }
    assert_eq!(ready.take_batch(2), [1, 2]);
    ready.push_front(2);
    assert_eq!(ready.len(), 4);
    assert_eq!(ready.take_batch(10), [2, 3, 4, 5]);
    assert!(ready.is_empty());
    assert!(ready.take_batch(3).is_empty());
}

proptest! {
    #[test]
    fn jitter_never_leaves_its_band(nanos in 0u64..u64::MAX / 2, sample: u64) {
        let d = Duration::from_nanos(nanos);
        let j = RetryPolicy::jittered(d, sample).as_nanos();
        let (d, span) = (d.as_nanos(), d.as_nanos() / 10);
        prop_assert!(j >= d - span && j <= d + span);
    }

    #[test]
    fn a_retry_is_never_before_its_delay_nor_after_the_lifetime(
        delays in proptest::collection::vec(1u64..10_000, 1..8),
        lifetime in 1u64..100_000,
        arrived in 0u64..1_000_000,
        elapsed in 0u64..200_000,
        failed in 1u32..100,
        sample: u64,
    ) {
        let delays: Vec<Duration> = delays.into_iter().map(Duration::from_millis).collect();
        let policy =
            RetryPolicy::new(Backoff::List(delays), Duration::from_millis(lifetime)).unwrap();
        let arrived = Duration::from_millis(arrived);
        let failed_at = arrived + Duration::from_millis(elapsed);
        let expires = arrived + policy.lifetime();
        match policy.after_failure(arrived, failed_at, failed, sample) {
            Next::GiveUp => prop_assert!(failed_at >= expires),
            Next::RetryAt(at) => {
                prop_assert!(failed_at < expires);
                prop_assert!(at <= expires);
                prop_assert!(at > failed_at);
                let least = policy.delay(failed).as_nanos() * 9 / 10;
                prop_assert!(at == expires || (at - failed_at).as_nanos() >= least);
            }
        }
    }
}
