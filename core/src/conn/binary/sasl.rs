//! SASL over the binary protocol (`-S`): list-mechs, auth and step, with
//! PLAIN, as memcached 1.6.18 serves them through Cyrus SASL.

use crate::config::Config;
use crate::conn::{Connection, Step};
use crate::sasl::SaslDb;
use crate::store::{ntotal, Store};

use super::{op, swallow_len, Request, Status};

/// The mechanisms offered: PLAIN only (memcached lists what its Cyrus SASL
/// configuration allows; `mech_list: plain` gives the same list).
const MECHANISMS: &[u8] = b"PLAIN";
/// memcached's `MAX_SASL_MECH_LEN`.
const MECH_MAX: usize = 32;
/// memcached reads the auth data into an item and refuses data that would
/// need a chunked one (larger than `slab_chunk_max`, 512 KiB by default).
const CHUNK_MAX: u64 = 512 * 1024;

/// Outcome of one authentication step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Authenticated,
    Continue,
    Failed,
}

/// One connection's SASL state.
///
/// Call order: [`SaslState::allows`] before every command; `list`, `start`
/// and `step` for the SASL commands. `authenticated` is cleared whenever a
/// SASL command runs and set only by a successful exchange, as memcached
/// does. `started` is memcached's `sasl_started` (the last auth succeeded
/// or asked to continue: a step is only accepted then). `completed` is
/// Cyrus SASL's `doneflag`: after a successful exchange the next mechanism
/// step on the connection fails, and only a failed auth clears it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SaslState {
    authenticated: bool,
    started: bool,
    completed: bool,
}

impl SaslState {
    /// Whether `opcode` may run (memcached's `authenticated()`): the SASL
    /// commands and version always, everything else once authenticated.
    pub(super) fn allows(&self, opcode: u8) -> bool {
        self.authenticated
            || matches!(
                opcode,
                op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP | op::VERSION
            )
    }

    /// `sasl_server_start`: an unknown mechanism or a failed first step
    /// fails (and resets the exchange); PLAIN without data asks for it.
    fn start(&mut self, db: &SaslDb, mech: &[u8], data: &[u8]) -> Outcome {
        let outcome = if !mech.eq_ignore_ascii_case(b"PLAIN") {
            Outcome::Failed
        } else if data.is_empty() {
            Outcome::Continue
        } else {
            self.mech_step(db, data)
        };
        if outcome == Outcome::Failed {
            self.completed = false;
        }
        self.started = outcome != Outcome::Failed;
        outcome
    }

    /// A step of the started exchange; memcached fails it without asking
    /// SASL when no auth started one.
    fn step(&mut self, db: &SaslDb, data: &[u8]) -> Outcome {
        if !self.started {
            return Outcome::Failed;
        }
        self.mech_step(db, data)
    }

    /// `sasl_server_step` of PLAIN: `authzid NUL authcid NUL password`,
    /// exactly, where the authorization id is empty or the user's own.
    fn mech_step(&mut self, db: &SaslDb, data: &[u8]) -> Outcome {
        if self.completed {
            return Outcome::Failed;
        }
        let mut parts = data.splitn(3, |&b| b == 0);
        let (Some(authzid), Some(user), Some(password)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Outcome::Failed;
        };
        let well_formed = !user.is_empty() && !password.contains(&0);
        let authorized = authzid.is_empty() || authzid == user;
        if well_formed && authorized && db.check(user, password) {
            self.completed = true;
            Outcome::Authenticated
        } else {
            Outcome::Failed
        }
    }
}

impl Connection {
    /// list-mechs (memcached's `bin_list_sasl_mechs`); an unknown command
    /// without `-S`.
    pub(super) fn bin_sasl_list(&mut self, cfg: &Config, req: &Request<'_>) {
        if cfg.sasl.is_none() {
            return self.bin_error(req, Status::UnknownCommand);
        }
        self.sasl.authenticated = false;
        self.bin_reply(req, 0, MECHANISMS);
    }

    /// auth and step (memcached's `process_bin_sasl_auth` and
    /// `process_bin_complete_sasl_auth`). The key names the mechanism, the
    /// value is the client's data; the request waits for all of it.
    pub(super) fn bin_sasl_auth(
        &mut self,
        store: &mut Store,
        req: &Request<'_>,
        rest: &[u8],
    ) -> Step {
        let fixed = req.h.fixed_len();
        let vlen = req.h.value_len();
        let Some(db) = store.config().sasl.as_ref() else {
            self.bin_error(req, Status::UnknownCommand);
            self.swallow = swallow_len(vlen);
            return Step::Done(fixed);
        };
        if req.key.len() > MECH_MAX {
            self.bin_error(req, Status::InvalidArguments);
            self.swallow = swallow_len(vlen);
            return Step::Done(fixed);
        }
        let fits = usize::try_from(vlen).ok().filter(|&n| {
            let size = ntotal(req.key.len(), 0, n);
            size <= u64::from(store.config().item_size_max) && size <= CHUNK_MAX
        });
        let Some(vlen) = fits else {
            self.bin_error(req, Status::OutOfMemory);
            self.swallow = swallow_len(vlen);
            return Step::Done(fixed);
        };
        if rest.len() < vlen {
            return Step::Incomplete;
        }
        let data = &rest[..vlen];
        // memcached copies the mechanism name as a C string.
        let mech = req.key.split(|&b| b == 0).next().unwrap_or(&[]);
        self.sasl.authenticated = false;
        let outcome = if req.cmd == op::SASL_AUTH {
            self.sasl.start(db, mech, data)
        } else {
            self.sasl.step(db, data)
        };
        match outcome {
            Outcome::Authenticated => {
                self.sasl.authenticated = true;
                store.stats.auth_cmds += 1;
                self.bin_reply(req, 0, b"Authenticated");
            }
            Outcome::Continue => {
                self.bin_header(req, Status::AuthContinue as u16, 0, 0, 0, 0);
            }
            Outcome::Failed => {
                store.stats.auth_cmds += 1;
                store.stats.auth_errors += 1;
                self.bin_error(req, Status::AuthError);
            }
        }
        Step::Done(fixed + vlen)
    }
}
