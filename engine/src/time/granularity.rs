//! The aggregation durations, from seconds to years.
//!
//! Siddhi calls them durations (`every sec ... year`, `per "hours"`), and so do the
//! messages and docs. The type is named [`Granularity`] so that `std::time::Duration`
//! keeps its own name in every file that needs both.

use std::fmt;

/// One aggregation duration. The order is from finest to coarsest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Granularity {
    Seconds,
    Minutes,
    Hours,
    Days,
    Months,
    Years,
}

impl Granularity {
    pub const ALL: [Granularity; 6] = [
        Granularity::Seconds,
        Granularity::Minutes,
        Granularity::Hours,
        Granularity::Days,
        Granularity::Months,
        Granularity::Years,
    ];

    /// Parses a duration word of the app language (`sec`, `minutes`, ...; any case).
    /// `week` is not a duration (Siddhi has none).
    pub fn parse(word: &str) -> Option<Granularity> {
        Some(match word.to_ascii_lowercase().as_str() {
            "sec" | "second" | "seconds" => Granularity::Seconds,
            "min" | "minute" | "minutes" => Granularity::Minutes,
            "hour" | "hours" => Granularity::Hours,
            "day" | "days" => Granularity::Days,
            "month" | "months" => Granularity::Months,
            "year" | "years" => Granularity::Years,
            _ => return None,
        })
    }

    /// Parses the `per` value of a retrieval query: the words of [`Granularity::parse`] plus `h`.
    pub fn parse_per(word: &str) -> Option<Granularity> {
        if word.trim().eq_ignore_ascii_case("h") {
            return Some(Granularity::Hours);
        }
        Granularity::parse(word.trim())
    }

    /// The table suffix: `<Aggregation>_SECONDS`, ...
    pub fn table_suffix(self) -> &'static str {
        match self {
            Granularity::Seconds => "SECONDS",
            Granularity::Minutes => "MINUTES",
            Granularity::Hours => "HOURS",
            Granularity::Days => "DAYS",
            Granularity::Months => "MONTHS",
            Granularity::Years => "YEARS",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Buckets of these durations are aligned in the aggregation time zone; seconds and
    /// minutes are plain epoch arithmetic.
    pub fn is_zoned(self) -> bool {
        self >= Granularity::Hours
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granularity::Seconds => "seconds",
            Granularity::Minutes => "minutes",
            Granularity::Hours => "hours",
            Granularity::Days => "days",
            Granularity::Months => "months",
            Granularity::Years => "years",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_aliases() {
        assert_eq!(Granularity::parse("SEC"), Some(Granularity::Seconds));
        assert_eq!(Granularity::parse("Minutes"), Some(Granularity::Minutes));
        assert_eq!(Granularity::parse("week"), None);
        assert_eq!(Granularity::parse("h"), None);
        assert_eq!(Granularity::parse_per("H"), Some(Granularity::Hours));
        assert_eq!(Granularity::parse_per("days"), Some(Granularity::Days));
        assert!(Granularity::Seconds < Granularity::Years);
        assert_eq!(Granularity::Months.table_suffix(), "MONTHS");
    }
}
