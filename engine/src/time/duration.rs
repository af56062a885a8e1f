//! The aggregation durations, from seconds to years.

use std::fmt;

/// One aggregation duration. The order is from finest to coarsest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Duration {
    Seconds,
    Minutes,
    Hours,
    Days,
    Months,
    Years,
}

impl Duration {
    pub const ALL: [Duration; 6] =
        [Duration::Seconds, Duration::Minutes, Duration::Hours, Duration::Days, Duration::Months, Duration::Years];

    /// Parses a duration word of the app language (`sec`, `minutes`, ...; any case).
    /// `week` is not a duration (Siddhi has none).
    pub fn parse(word: &str) -> Option<Duration> {
        Some(match word.to_ascii_lowercase().as_str() {
            "sec" | "second" | "seconds" => Duration::Seconds,
            "min" | "minute" | "minutes" => Duration::Minutes,
            "hour" | "hours" => Duration::Hours,
            "day" | "days" => Duration::Days,
            "month" | "months" => Duration::Months,
            "year" | "years" => Duration::Years,
            _ => return None,
        })
    }

    /// Parses the `per` value of a retrieval query: the words of [`Duration::parse`] plus `h`.
    pub fn parse_per(word: &str) -> Option<Duration> {
        if word.trim().eq_ignore_ascii_case("h") {
            return Some(Duration::Hours);
        }
        Duration::parse(word.trim())
    }

    /// The table suffix: `<Aggregation>_SECONDS`, ...
    pub fn table_suffix(self) -> &'static str {
        match self {
            Duration::Seconds => "SECONDS",
            Duration::Minutes => "MINUTES",
            Duration::Hours => "HOURS",
            Duration::Days => "DAYS",
            Duration::Months => "MONTHS",
            Duration::Years => "YEARS",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Buckets of these durations are aligned in the aggregation time zone; seconds and
    /// minutes are plain epoch arithmetic.
    pub fn is_zoned(self) -> bool {
        self >= Duration::Hours
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Duration::Seconds => "seconds",
            Duration::Minutes => "minutes",
            Duration::Hours => "hours",
            Duration::Days => "days",
            Duration::Months => "months",
            Duration::Years => "years",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_aliases() {
        assert_eq!(Duration::parse("SEC"), Some(Duration::Seconds));
        assert_eq!(Duration::parse("Minutes"), Some(Duration::Minutes));
        assert_eq!(Duration::parse("week"), None);
        assert_eq!(Duration::parse("h"), None);
        assert_eq!(Duration::parse_per("H"), Some(Duration::Hours));
        assert_eq!(Duration::parse_per("days"), Some(Duration::Days));
        assert!(Duration::Seconds < Duration::Years);
        assert_eq!(Duration::Months.table_suffix(), "MONTHS");
    }
}
