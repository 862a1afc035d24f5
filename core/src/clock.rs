//! Time as the host hands it to the core.

/// A reading of the host's clocks, passed into every call that may need time.
///
/// memcached needs two clocks: a monotonic one for relative TTLs and LRU
/// ages, and the unix wall clock to interpret absolute expiration times
/// (those over 30 days). The core never reads a clock itself; the host builds
/// a `Clock` once per event-loop pass and passes it in. `mono_ms` must never
/// go backwards across calls on the same [`Store`](crate::Store); the store
/// ignores a reading that does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Clock {
    /// Milliseconds on a monotonic clock with an arbitrary origin.
    pub mono_ms: u64,
    /// Seconds since the unix epoch on the wall clock.
    pub unix_secs: u64,
    /// Microseconds into that second (0 to 999,999), for the time stamps
    /// of log lines (`watch`); hosts that do not know it leave 0.
    pub unix_micros: u32,
}

impl Clock {
    /// A clock reading from its two parts.
    pub const fn new(mono_ms: u64, unix_secs: u64) -> Self {
        Clock {
            mono_ms,
            unix_secs,
            unix_micros: 0,
        }
    }

    /// The same reading with the wall clock's microseconds into its second.
    pub const fn with_micros(self, unix_micros: u32) -> Self {
        Clock {
            unix_micros,
            ..self
        }
    }

    /// The same wall clock, `ms` milliseconds later on both clocks.
    pub const fn advanced_ms(self, ms: u64) -> Self {
        Clock {
            mono_ms: self.mono_ms + ms,
            unix_secs: self.unix_secs + (self.mono_ms + ms) / 1000 - self.mono_ms / 1000,
            unix_micros: self.unix_micros,
        }
    }
}
