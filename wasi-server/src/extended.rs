//! memcached's `-o` extended options: comma-separated `name=value`
//! suboptions, parsed as memcached parses them (`getsubopt`, numbers with
//! `atoi`), with memcached's messages for what it refuses.
//!
//! The suboptions this server has:
//!
//! * `idle_timeout=SECONDS`: close connections idle this long (0 or less:
//!   never), reported by `stats settings`.
//!
//! Any other suboption is refused with memcached's `Illegal suboption
//! "..."`, and the process exits 1, as memcached does.

/// The suboptions given, with memcached's defaults for the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extended {
    /// `idle_timeout`, as given (memcached keeps the `atoi` result).
    pub idle_timeout: i32,
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
            let e = Extended { idle_timeout: t };
            assert_eq!(e.idle_timeout_ms(), 0);
        }
        assert_eq!(Extended { idle_timeout: 2 }.idle_timeout_ms(), 2000);
    }
}
