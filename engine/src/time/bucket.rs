//! Bucketing: which bucket of a duration an instant falls in, in the aggregation time zone.
//!
//! Rules (SEMANTICS.md §3):
//! - seconds and minutes are epoch arithmetic;
//! - an hour bucket is the run of instants that share one local hour *and* one UTC
//!   offset: it starts at that local hour's start at the instant's own offset, or at the
//!   offset transition when the offset changed inside the hour (so a repeated fall-back
//!   hour is two buckets, and a partly skipped hour starts at the transition);
//! - days, months and years start at the first instant of the local date, month or year
//!   (midnight; after a gap at midnight the transition instant; of a repeated midnight
//!   the earlier one).
//!
//! Stored bucket starts are epoch milliseconds. Time-zone rules come from the IANA
//! database bundled into the binary, never from the host's zone files.

use crate::time::BadTime;
use crate::time::granularity::Granularity;
use crate::time::timestamp::{MAX_MS, MIN_MS};
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

const SECOND_MS: i64 = 1000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// The aggregation time zone (`siddhi.properties.aggTimeZone`).
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    name: String,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone { tz: TimeZone::UTC, name: "GMT".into() }
    }
}

impl Zone {
    /// An IANA zone id (`Asia/Singapore`, `GMT`, `UTC`), or a fixed offset written
    /// `+05:30`, `GMT+05:30` or `UTC-05:00`.
    pub fn parse(name: &str) -> Result<Zone, BadTime> {
        let trimmed = name.trim();
        let fixed = trimmed
            .strip_prefix("GMT")
            .or_else(|| trimmed.strip_prefix("UTC"))
            .filter(|rest| rest.starts_with(['+', '-']))
            .or_else(|| trimmed.starts_with(['+', '-']).then_some(trimmed));
        if let Some(offset) = fixed {
            return parse_offset(offset)
                .map(|secs| Zone {
                    tz: TimeZone::fixed(jiff::tz::Offset::from_seconds(secs).expect("range checked")),
                    name: trimmed.to_string(),
                })
                .ok_or_else(|| {
                    BadTime(format!("aggTimeZone `{name}`: a fixed offset is written ±HH:mm, e.g. +05:30"))
                });
        }
        TimeZone::get(trimmed).map(|tz| Zone { tz, name: trimmed.to_string() }).map_err(|_| {
            // jiff's own message only says the id was not found; this one says what to use.
            BadTime(format!(
                "aggTimeZone `{name}` is not a known time-zone id; use an IANA id such as \
                 `GMT`, `UTC`, `Asia/Singapore` or `America/New_York`, or an offset like `+05:30`"
            ))
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The start of the bucket of `d` that holds `ms` (epoch milliseconds).
    pub fn bucket_start(&self, d: Granularity, ms: i64) -> i64 {
        self.bucket_range(d, ms).0
    }

    /// The first bucket start of `d` at or after `ms`.
    pub fn bucket_ceil(&self, d: Granularity, ms: i64) -> i64 {
        let (start, end) = self.bucket_range(d, ms);
        if start == ms { ms } else { end }
    }

    /// The bucket of `d` that holds `ms`, as `[start, end)` in epoch milliseconds.
    pub fn bucket_range(&self, d: Granularity, ms: i64) -> (i64, i64) {
        let ms = ms.clamp(MIN_MS, MAX_MS);
        match d {
            Granularity::Seconds => fixed_range(ms, SECOND_MS),
            Granularity::Minutes => fixed_range(ms, MINUTE_MS),
            Granularity::Hours => self.hour_range(ms),
            Granularity::Days | Granularity::Months | Granularity::Years => self
                .date_range(d, ms)
                // Only at the very ends of the supported range can the zone library not
                // represent the bucket; fall back to UTC arithmetic there.
                .unwrap_or_else(|| fixed_range(ms, 86_400_000)),
        }
    }

    fn offset_ms(&self, ms: i64) -> i64 {
        self.tz.to_offset(ts(ms)).seconds() as i64 * 1000
    }

    fn hour_range(&self, ms: i64) -> (i64, i64) {
        let off = self.offset_ms(ms);
        let candidate = (ms + off).div_euclid(HOUR_MS) * HOUR_MS - off;
        // A transition inside (candidate, ms] starts the bucket.
        let mut start = candidate;
        if let Some(t) = self.tz.preceding(ts(ms.saturating_add(1))).next() {
            let t = t.timestamp().as_millisecond();
            if t > candidate {
                start = t;
            }
        }
        let mut end = candidate + HOUR_MS;
        if let Some(t) = self.tz.following(ts(start)).next() {
            end = end.min(t.timestamp().as_millisecond());
        }
        (start, end)
    }

    fn date_range(&self, d: Granularity, ms: i64) -> Option<(i64, i64)> {
        let date = self.tz.to_datetime(ts(ms)).date();
        let (first, next) = match d {
            Granularity::Days => (date, date.tomorrow().ok()?),
            Granularity::Months => (date.first_of_month(), date.last_of_month().tomorrow().ok()?),
            _ => (date.first_of_year(), date.last_of_year().tomorrow().ok()?),
        };
        Some((self.day_start(first)?, self.day_start(next)?))
    }

    /// The first instant of a local date: midnight, or after a gap the transition instant,
    /// or of a repeated midnight the earlier one ("compatible" disambiguation).
    fn day_start(&self, date: Date) -> Option<i64> {
        let ambiguous = self.tz.to_ambiguous_timestamp(date.to_datetime(Time::midnight()));
        ambiguous.compatible().ok().map(|t| t.as_millisecond())
    }
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms.clamp(MIN_MS, MAX_MS)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn fixed_range(ms: i64, width: i64) -> (i64, i64) {
    let start = ms.div_euclid(width) * width;
    (start, start + width)
}

fn parse_offset(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h: i32 = text[1..3].parse().ok()?;
    let m: i32 = text[4..6].parse().ok()?;
    (h <= 18 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

/// Computes bucket starts for one duration, remembering the last bucket so that the
/// common case (the next instant falls in the same bucket) is two comparisons. Used per
/// event for the finest duration and per partial during roll-up.
#[derive(Debug, Clone)]
pub struct Bucketer {
    zone: Zone,
    duration: Granularity,
    start: i64,
    end: i64,
}

impl Bucketer {
    pub fn new(zone: Zone, duration: Granularity) -> Bucketer {
        Bucketer { zone, duration, start: 0, end: 0 }
    }

    pub fn duration(&self) -> Granularity {
        self.duration
    }

    #[inline]
    pub fn start(&mut self, ms: i64) -> i64 {
        // Speed: seconds and minutes never need the zone; larger buckets hit the cache.
        match self.duration {
            Granularity::Seconds => ms.div_euclid(SECOND_MS) * SECOND_MS,
            Granularity::Minutes => ms.div_euclid(MINUTE_MS) * MINUTE_MS,
            _ => {
                if ms >= self.start && ms < self.end {
                    return self.start;
                }
                let (s, e) = self.zone.bucket_range(self.duration, ms);
                self.start = s;
                self.end = e;
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::timestamp::parse;
    use proptest::prelude::*;

    fn z(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }
    fn at(text: &str) -> i64 {
        parse(text).unwrap_or_else(|| panic!("bad test time {text}"))
    }

    #[test]
    fn zone_ids() {
        assert!(Zone::parse("Asia/Singapo").is_err());
        assert!(Zone::parse("GMT").is_ok());
        assert!(Zone::parse("UTC").is_ok());
        assert!(Zone::parse("+05:30").is_ok());
        assert!(Zone::parse("GMT-05:00").is_ok());
        assert!(Zone::parse("+5").is_err());
        let msg = Zone::parse("Mars/Olympus").unwrap_err();
        assert!(msg.0.contains("Mars/Olympus") && msg.0.contains("IANA"), "{msg}");
    }

    #[test]
    fn seconds_and_minutes_are_epoch_arithmetic_even_before_1970() {
        let g = Zone::default();
        assert_eq!(g.bucket_start(Granularity::Seconds, 1_496_289_950_999), 1_496_289_950_000);
        assert_eq!(g.bucket_start(Granularity::Seconds, -1), -1000);
        assert_eq!(g.bucket_start(Granularity::Minutes, -1), -60_000);
        // Even in a zone with a 30-minute offset, minutes are epoch minutes.
        let india = z("Asia/Kolkata");
        assert_eq!(india.bucket_start(Granularity::Minutes, 1_496_289_950_000), 1_496_289_900_000);
    }

    #[test]
    fn hours_in_a_half_hour_zone_start_at_local_hours() {
        let india = z("Asia/Kolkata");
        // 04:05:50Z is 09:35:50 +05:30; the local hour starts 09:00 +05:30 = 03:30Z.
        assert_eq!(india.bucket_start(Granularity::Hours, at("2017-06-01 04:05:50")), at("2017-06-01 03:30:00"));
    }

    #[test]
    fn new_york_fall_back_repeats_the_hour_as_two_buckets() {
        let ny = z("America/New_York");
        // 2024-11-03: 01:00-02:00 EDT (05:00Z-06:00Z), then 01:00-02:00 EST (06:00Z-07:00Z).
        let first = ny.bucket_range(Granularity::Hours, at("2024-11-03 05:30:00"));
        let second = ny.bucket_range(Granularity::Hours, at("2024-11-03 06:30:00"));
        assert_eq!(first, (at("2024-11-03 05:00:00"), at("2024-11-03 06:00:00")));
        assert_eq!(second, (at("2024-11-03 06:00:00"), at("2024-11-03 07:00:00")));
        // The day is 25 hours long and starts at local midnight EDT.
        let day = ny.bucket_range(Granularity::Days, at("2024-11-03 12:00:00"));
        assert_eq!(day, (at("2024-11-03 04:00:00"), at("2024-11-04 05:00:00")));
    }

    #[test]
    fn new_york_spring_forward_skips_an_hour() {
        let ny = z("America/New_York");
        // 2024-03-10 02:00 EST jumps to 03:00 EDT at 07:00Z.
        assert_eq!(
            ny.bucket_range(Granularity::Hours, at("2024-03-10 06:59:59")),
            (at("2024-03-10 06:00:00"), at("2024-03-10 07:00:00"))
        );
        assert_eq!(
            ny.bucket_range(Granularity::Hours, at("2024-03-10 07:00:00")),
            (at("2024-03-10 07:00:00"), at("2024-03-10 08:00:00"))
        );
        let day = ny.bucket_range(Granularity::Days, at("2024-03-10 12:00:00"));
        assert_eq!(day.1 - day.0, 23 * HOUR_MS);
    }

    #[test]
    fn lord_howe_half_hour_shift_starts_a_bucket_at_the_transition() {
        let lh = z("Australia/Lord_Howe");
        // 2024-10-06 02:00 +10:30 (15:30Z on the 5th) becomes 02:30 +11:00.
        let before = lh.bucket_range(Granularity::Hours, at("2024-10-05 15:29:00"));
        assert_eq!(before, (at("2024-10-05 14:30:00"), at("2024-10-05 15:30:00")));
        let after = lh.bucket_range(Granularity::Hours, at("2024-10-05 15:40:00"));
        assert_eq!(after, (at("2024-10-05 15:30:00"), at("2024-10-05 16:00:00")));
        let next = lh.bucket_range(Granularity::Hours, at("2024-10-05 16:10:00"));
        assert_eq!(next, (at("2024-10-05 16:00:00"), at("2024-10-05 17:00:00")));
        // 2024-04-07 02:00 +11:00 (15:00Z on the 6th) falls back to 01:30 +10:30.
        let dst = lh.bucket_range(Granularity::Hours, at("2024-04-06 14:45:00"));
        assert_eq!(dst, (at("2024-04-06 14:00:00"), at("2024-04-06 15:00:00")));
        let std = lh.bucket_range(Granularity::Hours, at("2024-04-06 15:10:00"));
        assert_eq!(std, (at("2024-04-06 15:00:00"), at("2024-04-06 15:30:00")));
    }

    #[test]
    fn chatham_quarter_hour_zone() {
        let ch = z("Pacific/Chatham");
        // +12:45 standard: 2024-06-01 00:00Z is 12:45 local; the hour started 11:15Z... of
        // the previous local hour: 12:00 +12:45 = 23:15Z.
        assert_eq!(ch.bucket_start(Granularity::Hours, at("2024-06-01 00:00:00")), at("2024-05-31 23:15:00"));
        // Spring forward 2024-09-29 02:45 +12:45 (14:00Z on the 28th) to 03:45 +13:45: the
        // local hour 02:00-02:45 +12:45 ends at the transition, and 03:45-04:00 +13:45 is a
        // bucket of its own that starts there.
        assert_eq!(
            ch.bucket_range(Granularity::Hours, at("2024-09-28 13:50:00")),
            (at("2024-09-28 13:15:00"), at("2024-09-28 14:00:00"))
        );
        assert_eq!(
            ch.bucket_range(Granularity::Hours, at("2024-09-28 14:10:00")),
            (at("2024-09-28 14:00:00"), at("2024-09-28 14:15:00"))
        );
    }

    #[test]
    fn midnight_gap_starts_the_day_at_the_transition() {
        // Sao Paulo 2015-10-18: midnight -03:00 jumped to 01:00 -02:00 (03:00Z).
        let sp = z("America/Sao_Paulo");
        let day = sp.bucket_range(Granularity::Days, at("2015-10-18 15:00:00"));
        assert_eq!(day.0, at("2015-10-18 03:00:00"));
        // Its month starts at ordinary midnight of the 1st.
        assert_eq!(sp.bucket_start(Granularity::Months, at("2015-10-18 15:00:00")), at("2015-10-01 03:00:00"));
    }

    #[test]
    fn repeated_midnight_takes_the_earlier_one() {
        // Sao Paulo 2019-02-17: midnight -02:00 fell back to 23:00 -03:00 on the 16th, so
        // the 16th's 23:00-24:00 repeats; the 17th starts once, at 00:00 -03:00 (03:00Z).
        // Cuba falls back at 01:00 to 00:00: the 2024-11-03 midnight happens twice.
        let cuba = z("America/Havana");
        let day = cuba.bucket_range(Granularity::Days, at("2024-11-03 12:00:00"));
        // The first 00:00 is at -04:00 (04:00Z); the second at -05:00 (05:00Z).
        assert_eq!(day.0, at("2024-11-03 04:00:00"));
    }

    #[test]
    fn month_and_leap_year_ends() {
        let g = Zone::default();
        assert_eq!(
            g.bucket_range(Granularity::Days, at("2020-02-29 23:59:59")),
            (at("2020-02-29 00:00:00"), at("2020-03-01 00:00:00"))
        );
        assert_eq!(
            g.bucket_range(Granularity::Months, at("2020-02-29 12:00:00")),
            (at("2020-02-01 00:00:00"), at("2020-03-01 00:00:00"))
        );
        assert_eq!(g.bucket_range(Granularity::Months, at("2021-02-28 12:00:00")).1, at("2021-03-01 00:00:00"));
        assert_eq!(
            g.bucket_range(Granularity::Months, at("2024-12-31 23:59:59")),
            (at("2024-12-01 00:00:00"), at("2025-01-01 00:00:00"))
        );
        assert_eq!(
            g.bucket_range(Granularity::Years, at("2024-12-31 23:59:59")),
            (at("2024-01-01 00:00:00"), at("2025-01-01 00:00:00"))
        );
        // 2000 is a leap year, 1900 is not.
        assert_eq!(g.bucket_range(Granularity::Months, at("2000-02-15 00:00:00")).1, at("2000-03-01 00:00:00"));
        assert_eq!(g.bucket_range(Granularity::Months, at("1900-02-15 00:00:00")).1, at("1900-03-01 00:00:00"));
        assert_eq!(g.bucket_start(Granularity::Years, -1), at("1969-01-01 00:00:00"));
        // Singapore days start at 16:00Z the day before; Feb 29 2020 exists.
        let sg = z("Asia/Singapore");
        assert_eq!(sg.bucket_start(Granularity::Days, 1_582_991_999_000), 1_582_905_600_000);
        assert_eq!(sg.bucket_start(Granularity::Days, 1_582_992_001_000), 1_582_992_000_000);
        assert_eq!(sg.bucket_start(Granularity::Years, at("2020-06-01 00:00:00")), at("2019-12-31 16:00:00"));
    }

    #[test]
    fn extremes_do_not_panic() {
        let sg = z("Asia/Singapore");
        for d in Granularity::ALL {
            for ms in [i64::MIN, MIN_MS, MIN_MS + 1, -1, 0, MAX_MS, i64::MAX] {
                let (s, e) = sg.bucket_range(d, ms);
                assert!(s < e, "{d} {ms}: [{s}, {e})");
            }
        }
    }

    fn zones() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "GMT",
            "Asia/Singapore",
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "Asia/Kolkata",
            "America/Sao_Paulo",
            "America/Havana",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every instant lies in its bucket; the bucket's start maps to itself; and each
        /// bucket lies inside the bucket of every coarser duration (what roll-up relies on).
        /// From 1970 on, the test zones' offsets are whole minutes; before standard time some
        /// zones used local mean time with odd seconds, where a minute can straddle an hour.
        #[test]
        fn buckets_contain_their_instants_and_nest(name in zones(), ms in 0i64..4_102_444_800_000i64) {
            let zone = Zone::parse(name).unwrap();
            let mut prev: Option<(i64, i64)> = None;
            for d in Granularity::ALL {
                let (s, e) = zone.bucket_range(d, ms);
                prop_assert!(s <= ms && ms < e, "{} {} {}: [{}, {})", name, d, ms, s, e);
                prop_assert_eq!(zone.bucket_range(d, s), (s, e));
                prop_assert_eq!(zone.bucket_range(d, e - 1), (s, e));
                if let Some((ps, pe)) = prev {
                    prop_assert!(s <= ps && pe <= e, "{} {} nests [{}, {}) in [{}, {})", name, d, ps, pe, s, e);
                }
                prev = Some((s, e));
            }
        }

        #[test]
        fn bucketer_agrees_with_zone(name in zones(), start in 0i64..4_000_000_000_000i64, steps in prop::collection::vec(0i64..10_000_000, 1..50)) {
            let zone = Zone::parse(name).unwrap();
            for d in Granularity::ALL {
                let mut b = Bucketer::new(zone.clone(), d);
                let mut ms = start;
                for s in &steps {
                    ms += s;
                    prop_assert_eq!(b.start(ms), zone.bucket_start(d, ms));
                }
            }
        }
    }
}
