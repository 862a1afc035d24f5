//! memcached's command tokenizer (`tokenize_command`), byte for byte.
//!
//! Only the space byte separates tokens; tabs and other control bytes are
//! part of a token. At most 23 tokens are split out per pass; whatever
//! follows is left as the "rest", which only `get`-style commands read on.

/// memcached's `MAX_TOKENS`, counting the terminal token.
pub(crate) const MAX_TOKENS: usize = 24;

/// The tokens of one command line.
pub(crate) struct Tokens<'a> {
    line: &'a [u8],
    spans: [(u32, u32); MAX_TOKENS - 1],
    n: usize,
    /// Offset of the first unsplit byte when the line had more tokens than
    /// fit (memcached's non-NULL terminal token).
    rest: Option<usize>,
}

impl<'a> Tokens<'a> {
    /// Splits `line` (without its line ending) as memcached does.
    pub fn new(line: &'a [u8]) -> Tokens<'a> {
        let mut t = Tokens {
            line,
            spans: [(0, 0); MAX_TOKENS - 1],
            n: 0,
            rest: None,
        };
        let mut s = 0;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                if s != i {
                    t.spans[t.n] = (s as u32, i as u32);
                    t.n += 1;
                    if t.n == MAX_TOKENS - 1 {
                        let e = i + 1;
                        if e < line.len() {
                            t.rest = Some(e);
                        }
                        return t;
                    }
                }
                s = i + 1;
            }
            i += 1;
        }
        if s != i {
            t.spans[t.n] = (s as u32, i as u32);
            t.n += 1;
        }
        t
    }

    /// memcached's `ntokens`: real tokens plus the terminal one.
    pub fn ntokens(&self) -> usize {
        self.n + 1
    }

    /// Token `i`, or an empty slice past the end.
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            let (s, e) = self.spans[i];
            &self.line[s as usize..e as usize]
        } else {
            &[]
        }
    }

    /// Offset of token `i` within the line.
    pub fn offset(&self, i: usize) -> usize {
        if i < self.n {
            self.spans[i].0 as usize
        } else {
            self.rest.unwrap_or(self.line.len())
        }
    }

    /// memcached's `set_noreply_maybe`: the last split token is exactly
    /// `noreply`.
    pub fn noreply(&self) -> bool {
        self.n >= 1 && self.get(self.n - 1) == b"noreply"
    }

    /// Real tokens from `from` on.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        (from..self.n).map(move |i| self.get(i))
    }
}

/// Iterates over the space-separated words of `s` (all of them, with no
/// token cap), yielding each word's offset and bytes. Used for the keys of
/// `get`, which memcached re-tokenizes until the line is exhausted.
pub(crate) fn words(s: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut i = 0;
    core::iter::from_fn(move || {
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        if i >= s.len() {
            return None;
        }
        let start = i;
        while i < s.len() && s[i] != b' ' {
            i += 1;
        }
        Some((start, &s[start..i]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_space_only() {
        let t = Tokens::new(b"set k\tt  0 0 1 ");
        assert_eq!(t.ntokens(), 6);
        assert_eq!(t.get(1), b"k\tt");
        assert_eq!(t.get(4), b"1");
        assert_eq!(t.get(5), b"");
    }

    #[test]
    fn caps_at_23_tokens_and_keeps_the_rest() {
        let line: alloc::vec::Vec<u8> = (0..30)
            .flat_map(|i| alloc::format!("k{i} ").into_bytes())
            .collect();
        let t = Tokens::new(&line);
        assert_eq!(t.ntokens(), 24);
        assert!(t.rest.is_some());
        assert_eq!(&line[t.offset(23)..t.offset(23) + 3], b"k23");
    }

    #[test]
    fn noreply_is_last_token_only() {
        assert!(Tokens::new(b"set a 0 0 1 noreply").noreply());
        assert!(!Tokens::new(b"set a 0 0 1 noreply x").noreply());
    }
}
