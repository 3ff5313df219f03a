//! The value syntax of scenario files: durations (`500ms`, `1h30m`, `0`),
//! signed durations (skews), points in time relative to `start` (`-2h`, `+20m`,
//! `20m`, RFC 3339), ranges (`10s..2m`), windows (`[from, to]`), rates in
//! `[0, 1]` and crash rates (`0.5/h`).
//!
//! Parsing here is pure text to value; the messages say what was expected and
//! are completed with `file:line:col` by the caller. Nothing is drawn: a range
//! is kept as a range for the runner to draw from the seed.

use std::fmt;

use engine::time::{Span, Timestamp};

use super::yaml::shorten;

/// A point in time, stored as its offset from the scenario's `start`
/// (an RFC 3339 timestamp is converted at load).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point {
    pub offset: Span,
}

impl Point {
    pub const START: Point = Point { offset: Span::ZERO };

    pub const fn from_offset(offset: Span) -> Point {
        Point { offset }
    }

    /// The instant in simulated wall-clock time.
    pub fn at(self, start: Timestamp) -> Timestamp {
        start + self.offset
    }
}

impl fmt::Display for Point {
    /// `+2h`, `-30m`, `0`: the signed syntax the loader reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset.is_positive() {
            write!(f, "+{}", self.offset)
        } else {
            write!(f, "{}", self.offset)
        }
    }
}

/// A duration drawn uniformly from `[min, max]` by the runner (from the seed);
/// a single duration is a range with `min == max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationRange {
    pub min: Span,
    pub max: Span,
}

impl DurationRange {
    pub const fn fixed(span: Span) -> DurationRange {
        DurationRange { min: span, max: span }
    }
    pub const fn new(min: Span, max: Span) -> DurationRange {
        DurationRange { min, max }
    }
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

impl fmt::Display for DurationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fixed() {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// An inclusive window of points in time: `[from, to]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub from: Point,
    pub to: Point,
}

impl Window {
    pub fn contains(&self, point: Point) -> bool {
        self.from <= point && point <= self.to
    }
}

/// A value that may have been written as `{unchecked: VALUE}`: then it skipped
/// every validity rule and is stored as is (to test the engine on bad data).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkable<T> {
    pub value: T,
    pub unchecked: bool,
}

impl<T> Checkable<T> {
    pub const fn checked(value: T) -> Checkable<T> {
        Checkable { value, unchecked: false }
    }
    pub const fn unchecked(value: T) -> Checkable<T> {
        Checkable { value, unchecked: true }
    }
}

/// A crash rate: expected crashes per replica per simulated hour.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct CrashRate {
    pub per_hour: f64,
}

const DURATION_EXPECTED: &str = "a duration like `500ms`, `30s`, `1h30m`, `2d` or `0`";

/// `(unit, micros)`, largest first: units of one duration must appear in this order.
const UNITS: [(&str, i64); 7] = [
    ("w", 7 * 86_400_000_000),
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
];

/// An unsigned duration: `0`, or numbers with units (`w d h m s ms us`), largest
/// unit first, each at most once (`1h30m`).
pub fn parse_duration(text: &str) -> Result<Span, String> {
    let bad = || format!("expected {DURATION_EXPECTED}, found `{}`", shorten(text));
    if text == "0" {
        return Ok(Span::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut total: i64 = 0;
    let mut last_unit = None::<usize>;
    while at < bytes.len() {
        let digits_start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        if at == digits_start {
            return Err(bad());
        }
        let unit_start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
            at += 1;
        }
        let number: i64 =
            text[digits_start..unit_start].parse().map_err(|_| format!("duration `{}` is too long", shorten(text)))?;
        let unit = &text[unit_start..at];
        if unit.is_empty() && at < bytes.len() {
            return Err(bad());
        }
        if unit.is_empty() {
            return Err(format!(
                "duration `{}` needs a unit (`ms`, `s`, `m`, `h`, `d`, `w`); only `0` goes without",
                shorten(text)
            ));
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit `{unit}` in duration `{}`, expected one of `ms`, `s`, `m`, `h`, `d`, `w`",
                shorten(text)
            ));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "duration `{}` repeats or misorders its units, expected the largest unit first (`1h30m`)",
                shorten(text)
            ));
        }
        last_unit = Some(index);
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|micros| total.checked_add(micros))
            .ok_or_else(|| format!("duration `{}` is too long", shorten(text)))?;
    }
    Ok(Span::from_micros(total))
}

/// A signed duration: `-40s`, `+2h`, `2h`.
pub fn parse_signed_duration(text: &str) -> Result<Span, String> {
    let (negative, rest) = split_sign(text);
    let span = parse_duration(rest)
        .map_err(|_| format!("expected a signed duration like `-40s`, `+2h` or `0`, found `{}`", shorten(text)))?;
    Ok(if negative { -span } else { span })
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest)
    } else {
        (false, text)
    }
}

/// A point in time: a signed duration from `start` (unsigned means `+`), or an
/// RFC 3339 timestamp.
pub fn parse_point(text: &str, start: Timestamp) -> Result<Point, String> {
    if looks_like_timestamp(text) {
        let Some(at) = Timestamp::parse_rfc3339(text) else {
            return Err(format!(
                "expected an RFC 3339 timestamp like `2026-01-05T09:00:00Z`, found `{}`",
                shorten(text)
            ));
        };
        return Ok(Point::from_offset(at.since(start)));
    }
    let (negative, rest) = split_sign(text);
    let span = parse_duration(rest).map_err(|_| {
        format!(
            "expected a point in time (`+20m`, `-2h`, `20m` after `start`, or an RFC 3339 timestamp), found `{}`",
            shorten(text)
        )
    })?;
    Ok(Point::from_offset(if negative { -span } else { span }))
}

/// Four digits and a dash: a date, so an RFC 3339 timestamp was meant.
fn looks_like_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-'
}

/// `MIN..MAX` or a single value (then `min == max`), each side parsed by `side`.
pub fn parse_range(text: &str, side: fn(&str) -> Result<Span, String>, what: &str) -> Result<DurationRange, String> {
    match text.split_once("..") {
        None => side(text)
            .map(DurationRange::fixed)
            .map_err(|_| format!("expected {what} or a range like `10s..2m`, found `{}`", shorten(text))),
        Some((min, max)) => {
            let bad_side = |side_text: &str| {
                format!(
                    "expected a range like `10s..2m`, found `{}` (`{}` is not {what})",
                    shorten(text),
                    shorten(side_text)
                )
            };
            let min_span = side(min).map_err(|_| bad_side(min))?;
            let max_span = side(max).map_err(|_| bad_side(max))?;
            if min_span > max_span {
                return Err(format!("range `{}` is empty, expected its start to be at most its end", shorten(text)));
            }
            Ok(DurationRange::new(min_span, max_span))
        }
    }
}

/// A probability: a number in `[0, 1]`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let value =
        parse_number(text).ok_or_else(|| format!("expected a rate between 0 and 1, found `{}`", shorten(text)))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("rate {} is out of range, expected a number between 0 and 1", shorten(text)));
    }
    Ok(value)
}

/// `0.5/h` (also `/s`, `/m`, `/d`, `/w`), or `0`.
pub fn parse_crash_rate(text: &str) -> Result<CrashRate, String> {
    let bad = || {
        format!("expected a rate per replica like `0.5/h` (per `s`, `m`, `h`, `d` or `w`), found `{}`", shorten(text))
    };
    if text == "0" {
        return Ok(CrashRate { per_hour: 0.0 });
    }
    let (number, unit) = text.split_once('/').ok_or_else(bad)?;
    let count = parse_number(number.trim()).ok_or_else(bad)?;
    let hours_per_unit = match unit.trim() {
        "s" => 1.0 / 3600.0,
        "m" => 1.0 / 60.0,
        "h" => 1.0,
        "d" => 24.0,
        "w" => 168.0,
        _ => return Err(bad()),
    };
    if count < 0.0 {
        return Err(format!("crash rate `{}` is negative, expected at least 0", shorten(text)));
    }
    let per_hour = count / hours_per_unit;
    if !per_hour.is_finite() {
        return Err(bad());
    }
    Ok(CrashRate { per_hour })
}

/// A finite decimal number (no `inf`, `nan` or hex).
pub fn parse_number(text: &str) -> Option<f64> {
    let ok_chars =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if !ok_chars {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A whole number without sign tricks: `0`, `12`.
pub fn parse_unsigned(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// YAML 1.2 core booleans.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Timestamp {
        Timestamp::parse_rfc3339("2026-01-05T00:00:00Z").unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Span::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Span::from_mins(90)));
        assert_eq!(parse_duration("2d"), Ok(Span::from_days(2)));
        assert_eq!(parse_duration("1w"), Ok(Span::from_days(7)));
        assert_eq!(parse_duration("0"), Ok(Span::ZERO));
        assert_eq!(parse_duration("1m500ms"), Ok(Span::from_millis(60_500)));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("30m1h").unwrap_err().contains("largest unit first"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit `x`"));
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999w").unwrap_err().contains("too long"));
        for span in [Span::from_micros(90_061_001_001), Span::from_mins(90), Span::ZERO] {
            assert_eq!(parse_duration(&span.to_string()), Ok(span));
        }
    }

    #[test]
    fn points_and_skews() {
        assert_eq!(parse_point("-2h", start()), Ok(Point::from_offset(-Span::from_hours(2))));
        assert_eq!(parse_point("+20m", start()), Ok(Point::from_offset(Span::from_mins(20))));
        assert_eq!(parse_point("20m", start()), Ok(Point::from_offset(Span::from_mins(20))));
        assert_eq!(parse_point("2026-01-05T09:00:00Z", start()), Ok(Point::from_offset(Span::from_hours(9))));
        assert!(parse_point("2026-13-05T09:00:00Z", start()).unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_signed_duration("-40s"), Ok(-Span::from_secs(40)));
        assert_eq!(Point::from_offset(Span::from_hours(2)).to_string(), "+2h");
        assert_eq!(Point::from_offset(-Span::from_hours(2)).to_string(), "-2h");
    }

    #[test]
    fn ranges_rates() {
        assert_eq!(
            parse_range("10s..2m", parse_duration, "a duration"),
            Ok(DurationRange::new(Span::from_secs(10), Span::from_mins(2)))
        );
        assert_eq!(parse_range("30s", parse_duration, "a duration"), Ok(DurationRange::fixed(Span::from_secs(30))));
        assert!(parse_range("2m..10s", parse_duration, "a duration").unwrap_err().contains("is empty"));
        assert_eq!(
            parse_range("-2s..2s", parse_signed_duration, "a signed duration").unwrap().min,
            -Span::from_secs(2)
        );
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("nan").is_err());
        assert_eq!(parse_crash_rate("0.5/h"), Ok(CrashRate { per_hour: 0.5 }));
        assert_eq!(parse_crash_rate("1/m"), Ok(CrashRate { per_hour: 60.0 }));
        assert!(parse_crash_rate("-1/h").is_err());
        assert!(parse_crash_rate("1/y").is_err());
    }
}
