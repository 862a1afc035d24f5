//! Number parsing and printing with memcached's exact acceptance rules.
//!
//! memcached parses every numeric token with C's `strtol`/`strtoul`/`strtoull`
//! plus a trailing-character check (`safe_strto*` in its `util.c`). The quirks
//! are observable on the wire, so they are reproduced here on purpose:
//! leading whitespace and a `+`/`-` sign are accepted, a trailing whitespace
//! byte ends the number, values that overflow 64 bits are rejected, and
//! "negative" unsigned values are rejected only when they wrap past `i64::MAX`
//! (so `-0` is a valid unsigned zero).

/// `isspace` in the C locale.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull`/`strtoll` saw: magnitude, sign and where parsing stopped.
struct Scan {
    negative: bool,
    magnitude: u64,
    overflow: bool,
    /// Index just past the last digit, or `None` when no digit was found.
    end: Option<usize>,
}

fn scan(s: &[u8]) -> Scan {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        let d = u64::from(s[i] - b'0');
        match magnitude.checked_mul(10).and_then(|m| m.checked_add(d)) {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    Scan {
        negative,
        magnitude,
        overflow,
        end: (i > start).then_some(i),
    }
}

/// The part of `safe_strto*` shared by all widths: the number must be
/// followed by the end of the token or a whitespace byte.
fn terminated(s: &[u8], end: usize) -> bool {
    end == s.len() || is_c_space(s[end])
}

/// memcached's `safe_strtoull`: an unsigned 64-bit number.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    let sc = scan(s);
    let end = sc.end?;
    if sc.overflow || !terminated(s, end) {
        return None;
    }
    let value = if sc.negative {
        sc.magnitude.wrapping_neg()
    } else {
        sc.magnitude
    };
    // strtoull negates "-N"; memcached rejects it only when the result looks
    // negative as a signed number and a '-' is present.
    if (value as i64) < 0 && sc.negative {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul` on a 64-bit host: parsed as 64 bits, then
/// silently truncated to 32 (so `4294967296` becomes `0`).
pub(crate) fn parse_u32_truncating(s: &[u8]) -> Option<u32> {
    parse_u64(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` on a 64-bit host: parsed as a signed 64-bit
/// number (overflow rejected), then silently truncated to 32 bits.
pub(crate) fn parse_i32_truncating(s: &[u8]) -> Option<i32> {
    let sc = scan(s);
    let end = sc.end?;
    if sc.overflow || !terminated(s, end) {
        return None;
    }
    let value: i64 = if sc.negative {
        if sc.magnitude > (i64::MAX as u64) + 1 {
            return None;
        }
        (sc.magnitude as i64).wrapping_neg()
    } else {
        if sc.magnitude > i64::MAX as u64 {
            return None;
        }
        sc.magnitude as i64
    };
    Some(value as i32)
}

/// Parses a stored value for incr/decr the way memcached's `do_add_delta`
/// does: `strtoull` over the value, which in memcached is always followed by
/// `\r\n`, so running off the end of the value counts as a valid terminator.
pub(crate) fn parse_stored_u64(value: &[u8]) -> Option<u64> {
    parse_u64(value)
}

/// Appends the decimal form of `v` to `out` (a byte vector or a
/// connection's output).
pub(crate) fn push_u64<O: for<'a> Extend<&'a u8>>(out: &mut O, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(&buf[i..]);
}

/// Appends the decimal form of a signed value to `out`.
pub(crate) fn push_i64(out: &mut alloc::vec::Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_accepts_memcached_quirks() {
        assert_eq!(parse_u64(b"12"), Some(12));
        assert_eq!(parse_u64(b"+12"), Some(12));
        assert_eq!(parse_u64(b"\t12"), Some(12));
        assert_eq!(parse_u64(b"12\t"), Some(12));
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn unsigned_rejects_garbage_sign_and_overflow() {
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"abc"), None);
        assert_eq!(parse_u64(b"12abc"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"+"), None);
    }

    #[test]
    fn flags_truncate_to_32_bits() {
        assert_eq!(parse_u32_truncating(b"4294967296"), Some(0));
        assert_eq!(parse_u32_truncating(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32_truncating(b"-1"), None);
    }

    #[test]
    fn signed_truncates_to_32_bits() {
        assert_eq!(parse_i32_truncating(b"-1"), Some(-1));
        assert_eq!(parse_i32_truncating(b"4294967297"), Some(1));
        assert_eq!(parse_i32_truncating(b"x"), None);
        assert_eq!(parse_i32_truncating(b"99999999999999999999"), None);
    }

    #[test]
    fn printing_round_trips() {
        let mut v = alloc::vec::Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, u64::MAX);
        v.push(b' ');
        push_i64(&mut v, -42);
        assert_eq!(v, b"0 18446744073709551615 -42");
    }
}
