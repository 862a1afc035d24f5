//! memcached's `-o` extended options: comma-separated `name=value`
//! suboptions, parsed as memcached parses them (`getsubopt`, numbers with
//! `atoi`, `safe_strtoul`), with memcached's messages for what it refuses.
//!
//! The suboptions this server has:
//!
//! * `idle_timeout=SECONDS`: close connections idle this long (0 or less:
//!   never), reported by `stats settings`.
//! * `lru_crawler`, `no_lru_crawler`: start with the LRU crawler enabled
//!   (the default) or disabled; a value after either is ignored.
//! * `lru_crawler_sleep=MICROSECONDS`: `atoi`, refused outside 0 to
//!   1000000.
//! * `lru_crawler_tocrawl=N`: memcached's `safe_strtoul` (a 64-bit number,
//!   kept to its low 32 bits).
//!
//! The crawler settings are reported by `stats settings` and may be changed
//! at run time by `lru_crawler enable|disable|sleep|tocrawl`.
//!
//! Any other suboption is refused with memcached's `Illegal suboption
//! "..."`, and the process exits 1, as memcached does.

use wasmcached_core::CrawlerSettings;

/// The suboptions given, with memcached's defaults for the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extended {
    /// `idle_timeout`, as given (memcached keeps the `atoi` result).
    pub idle_timeout: i32,
    /// The LRU crawler's settings at start.
    pub crawler: CrawlerSettings,
}

impl Extended {
    /// Milliseconds after which idle connections are closed; 0 never.
    pub fn idle_timeout_ms(&self) -> u64 {
        u64::try_from(self.idle_timeout).unwrap_or(0) * 1000
    }
}

/// Parses every `-o` argument in order (later ones override earlier ones,
/// as in memcached). The error is the line memcached prints.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Extended, String> {
    let mut ext = Extended::default();
    for arg in args {
        // getsubopt: an empty argument has no suboptions; otherwise every
        // comma separates one, empty ones included.
        if arg.is_empty() {
            continue;
        }
        for sub in arg.split(',') {
            let (name, value) = match sub.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (sub, None),
            };
            match name {
                "idle_timeout" => {
                    let v = value
                        .ok_or_else(|| "Missing numeric argument for idle_timeout".to_string())?;
                    ext.idle_timeout = atoi(v);
                }
                "lru_crawler" => ext.crawler.enabled = true,
                "no_lru_crawler" => ext.crawler.enabled = false,
                "lru_crawler_sleep" => {
                    let v = value.ok_or_else(|| "Missing lru_crawler_sleep value".to_string())?;
                    ext.crawler.sleep_us = u32::try_from(atoi(v))
                        .ok()
                        .filter(|&us| us <= 1_000_000)
                        .ok_or_else(|| {
                            "LRU crawler sleep must be between 0 and 1 second".to_string()
                        })?;
                }
                "lru_crawler_tocrawl" => {
                    let v = value.ok_or_else(|| "Missing lru_crawler_tocrawl value".to_string())?;
                    ext.crawler.tocrawl = safe_strtoul(v).ok_or_else(|| {
                        "lru_crawler_tocrawl takes a numeric 32bit value".to_string()
                    })?;
                }
                _ => return Err(format!("Illegal suboption \"{sub}\"")),
            }
        }
    }
    Ok(ext)
}

/// C's `atoi` (glibc: `(int) strtol(s, NULL, 10)`): leading white space,
/// an optional sign, then digits up to the first non-digit; no digits is
/// 0; out of range saturates to a `long` and is then truncated to an int.
fn atoi(s: &str) -> i32 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = i64::from(b - b'0');
        v = if negative {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
    }
    v as i32
}

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// memcached's `safe_strtoul` on a 64-bit host: `strtoul` (leading white
/// space, an optional sign, decimal digits; a minus negates modulo 2^64;
/// too large is an error), which must be followed by the end or white
/// space; a result that is negative as a signed number is refused when a
/// minus was given; then kept to its low 32 bits.
fn safe_strtoul(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let mut i = b.iter().take_while(|&&c| is_c_space(c)).count();
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        // strtoul read nothing: endptr is the start.
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[i..i + digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    match b.get(i + digits) {
        None => {}
        Some(&c) if is_c_space(c) => {}
        Some(_) => return None,
    }
    let v = if negative { v.wrapping_neg() } else { v };
    if (v as i64) < 0 && negative {
        return None;
    }
    Some(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_memcached() {
        let p = |args: &[&str]| parse(args.iter().copied());
        assert_eq!(p(&[]), Ok(Extended::default()));
        assert_eq!(p(&[""]), Ok(Extended::default()));
        assert_eq!(p(&["idle_timeout=5"]).map(|e| e.idle_timeout), Ok(5));
        assert_eq!(
            p(&["idle_timeout=5", "idle_timeout=7"]).map(|e| e.idle_timeout),
            Ok(7)
        );
        // atoi: garbage is 0, a number is read up to the first non-digit.
        assert_eq!(p(&["idle_timeout=abc"]).map(|e| e.idle_timeout), Ok(0));
        assert_eq!(p(&["idle_timeout=5 extra"]).map(|e| e.idle_timeout), Ok(5));
        assert_eq!(p(&["idle_timeout= -1"]).map(|e| e.idle_timeout), Ok(-1));
        assert_eq!(
            p(&["idle_timeout=99999999999"]).map(|e| e.idle_timeout),
            Ok(1_215_752_191)
        );
        assert_eq!(p(&["bogus"]), Err("Illegal suboption \"bogus\"".into()));
        assert_eq!(p(&["bogus=1"]), Err("Illegal suboption \"bogus=1\"".into()));
        assert_eq!(
            p(&["idle_timeout=5,bogus"]),
            Err("Illegal suboption \"bogus\"".into())
        );
        assert_eq!(
            p(&["idle_timeout=5,,x"]),
            Err("Illegal suboption \"\"".into())
        );
        assert_eq!(
            p(&["idle_timeout"]),
            Err("Missing numeric argument for idle_timeout".into())
        );
    }

    #[test]
    fn negative_or_zero_never_times_out() {
        for t in [0, -1] {
            let e = Extended {
                idle_timeout: t,
                ..Extended::default()
            };
            assert_eq!(e.idle_timeout_ms(), 0);
        }
        let e = Extended {
            idle_timeout: 2,
            ..Extended::default()
        };
        assert_eq!(e.idle_timeout_ms(), 2000);
    }

    /// What memcached 1.6.18 reports (`stats settings`) or says for each
    /// of these, checked against it.
    #[test]
    fn crawler_suboptions_as_memcached() {
        let p = |o: &str| parse([o]).map(|e| e.crawler);
        let c = |enabled, sleep_us, tocrawl| {
            Ok(CrawlerSettings {
                enabled,
                sleep_us,
                tocrawl,
            })
        };
        assert_eq!(p(""), c(true, 100, 0));
        assert_eq!(p("lru_crawler"), c(true, 100, 0));
        assert_eq!(p("lru_crawler=5"), c(true, 100, 0));
        assert_eq!(p("no_lru_crawler"), c(false, 100, 0));
        assert_eq!(p("no_lru_crawler=1"), c(false, 100, 0));
        assert_eq!(p("no_lru_crawler,lru_crawler"), c(true, 100, 0));
        assert_eq!(p("lru_crawler,no_lru_crawler"), c(false, 100, 0));
        assert_eq!(
            parse(["no_lru_crawler", "lru_crawler_sleep=7"]).map(|e| e.crawler),
            c(false, 7, 0)
        );

        let sleep_range = Err("LRU crawler sleep must be between 0 and 1 second".to_string());
        assert_eq!(p("lru_crawler_sleep=1000000"), c(true, 1_000_000, 0));
        assert_eq!(p("lru_crawler_sleep=0"), c(true, 0, 0));
        assert_eq!(p("lru_crawler_sleep="), c(true, 0, 0));
        assert_eq!(p("lru_crawler_sleep=abc"), c(true, 0, 0));
        assert_eq!(p("lru_crawler_sleep=50x"), c(true, 50, 0));
        assert_eq!(p("lru_crawler_sleep= 30"), c(true, 30, 0));
        // atoi keeps the low 32 bits: 2^32 + 100 is 100.
        assert_eq!(p("lru_crawler_sleep=4294967396"), c(true, 100, 0));
        assert_eq!(p("lru_crawler_sleep=2000000"), sleep_range);
        assert_eq!(p("lru_crawler_sleep=1000001"), sleep_range);
        assert_eq!(p("lru_crawler_sleep=-1"), sleep_range);
        assert_eq!(
            p("lru_crawler_sleep"),
            Err("Missing lru_crawler_sleep value".into())
        );

        let numeric = Err("lru_crawler_tocrawl takes a numeric 32bit value".to_string());
        assert_eq!(p("lru_crawler_tocrawl=5"), c(true, 100, 5));
        assert_eq!(p("lru_crawler_tocrawl=4294967295"), c(true, 100, u32::MAX));
        assert_eq!(p("lru_crawler_tocrawl=4294967296"), c(true, 100, 0));
        assert_eq!(p("lru_crawler_tocrawl=4294967297"), c(true, 100, 1));
        assert_eq!(
            p("lru_crawler_tocrawl=18446744073709551615"),
            c(true, 100, u32::MAX)
        );
        assert_eq!(
            p("lru_crawler_tocrawl=9223372036854775808"),
            c(true, 100, 0)
        );
        assert_eq!(p("lru_crawler_tocrawl= 7"), c(true, 100, 7));
        assert_eq!(p("lru_crawler_tocrawl=7 "), c(true, 100, 7));
        assert_eq!(p("lru_crawler_tocrawl=7 x"), c(true, 100, 7));
        assert_eq!(p("lru_crawler_tocrawl=7\n"), c(true, 100, 7));
        assert_eq!(p("lru_crawler_tocrawl=+8"), c(true, 100, 8));
        assert_eq!(p("lru_crawler_tocrawl=-0"), c(true, 100, 0));
        assert_eq!(p("lru_crawler_tocrawl=010"), c(true, 100, 10));
        assert_eq!(
            p("lru_crawler_tocrawl=-18446744073709551615"),
            c(true, 100, 1)
        );
        assert_eq!(p("lru_crawler_tocrawl=18446744073709551616"), numeric);
        assert_eq!(p("lru_crawler_tocrawl="), numeric);
        assert_eq!(p("lru_crawler_tocrawl=abc"), numeric);
        assert_eq!(p("lru_crawler_tocrawl=7x"), numeric);
        assert_eq!(p("lru_crawler_tocrawl=0x10"), numeric);
        assert_eq!(p("lru_crawler_tocrawl=-1"), numeric);
        assert_eq!(p("lru_crawler_tocrawl= -5"), numeric);
        assert_eq!(p("lru_crawler_tocrawl=+"), numeric);
        assert_eq!(
            p("lru_crawler_tocrawl"),
            Err("Missing lru_crawler_tocrawl value".into())
        );

        // Suboptions are taken in order: the first bad one is reported.
        assert_eq!(p("lru_crawler_sleep=-1,bogus"), sleep_range);
        assert_eq!(
            p("bogus,lru_crawler_sleep=-1"),
            Err("Illegal suboption \"bogus\"".into())
        );
        assert_eq!(
            p("lru_crawler_sleep=5,lru_crawler_tocrawl=9,no_lru_crawler"),
            c(false, 5, 9)
        );
    }
}
