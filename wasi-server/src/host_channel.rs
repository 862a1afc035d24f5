//! The runner's messages to a wasm guest, framed on the guest's standard
//! input.
//!
//! A WASI guest gets no signals and, under the runner, no files, so the
//! runner turns the signals meant for the server into messages: SIGUSR1
//! into a graceful stop (with `-e`), SIGHUP into the `-Y` file's new
//! content, which the runner read. Standard input is the one stream a WASI
//! command has from its host; the runner's input stays open and empty
//! between messages, and makes the guest's `poll` return while a message
//! is unread, so an idle guest wakes up for it.
//!
//! A message is a frame: a tag byte, the payload's length as a 4-byte
//! big-endian number, the payload. The length is checked against the
//! tag's limit before any payload is buffered, so a guest holds at most
//! one frame of at most [`AUTH_FILE_MAX`] bytes. A stream that breaks the
//! framing (an unknown tag, an over-long payload) cannot be resynchronised
//! and is ignored from then on.

use wasmcached_core::AUTH_FILE_MAX;

/// Tag of a graceful stop request (no payload).
const TAG_STOP: u8 = b'S';
/// Tag of the auth file's new content.
const TAG_AUTH_FILE: u8 = b'Y';
/// Tag and length.
const HEADER: usize = 5;

/// What the runner tells the guest.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Write the snapshot (`-e`) and exit, as on memcached's SIGUSR1.
    GracefulStop,
    /// Use these users from now on: the `-Y` file's content, re-read on
    /// SIGHUP.
    AuthFile(Vec<u8>),
}

/// The input broke the framing; nothing after it can be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Garbled(pub String);

/// The frame of a graceful stop request.
pub fn encode_stop() -> Vec<u8> {
    frame(TAG_STOP, &[])
}

/// The frame carrying the auth file's content; None when it is over
/// [`AUTH_FILE_MAX`] (the guest would refuse it).
pub fn encode_auth_file(content: &[u8]) -> Option<Vec<u8>> {
    (content.len() <= AUTH_FILE_MAX).then(|| frame(TAG_AUTH_FILE, content))
}

fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.push(tag);
    // Callers bound the payload far below u32::MAX.
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The largest payload a tag may carry, or None for an unknown tag.
fn payload_max(tag: u8) -> Option<usize> {
    match tag {
        TAG_STOP => Some(0),
        TAG_AUTH_FILE => Some(AUTH_FILE_MAX),
        _ => None,
    }
}

/// Reassembles frames from reads of any size.
#[derive(Default)]
pub struct Decoder {
    /// The current frame so far: never more than one frame.
    buf: Vec<u8>,
    /// The current frame's payload length, once its header is in.
    payload: Option<usize>,
    garbled: bool,
}

impl Decoder {
    /// How many bytes complete the current header or payload: what to read
    /// next so that the buffer never grows past one frame.
    pub fn want(&self) -> usize {
        match self.payload {
            Some(n) => HEADER + n - self.buf.len(),
            None => HEADER - self.buf.len(),
        }
    }

    /// Takes bytes read from the stream; returns the messages they
    /// complete, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<Message>, Garbled> {
        if self.garbled {
            return Err(Garbled("the stream broke its framing earlier".into()));
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let n = self.want().min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.want() > 0 {
                break;
            }
            if self.payload.is_none() {
                let tag = self.buf[0];
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                match payload_max(tag) {
                    Some(max) if len <= max => self.payload = Some(len),
                    Some(max) => {
                        return self.garble(format!(
                            "a message of {len} bytes (tag {tag:#04x}, at most {max})"
                        ))
                    }
                    None => return self.garble(format!("an unknown message tag {tag:#04x}")),
                }
            }
            // An empty payload completes the frame with its header.
            if self.want() == 0 {
                out.push(self.take_frame());
            }
        }
        Ok(out)
    }

    /// The complete frame in the buffer, which starts the next one.
    fn take_frame(&mut self) -> Message {
        let frame = std::mem::take(&mut self.buf);
        self.payload = None;
        match frame[0] {
            TAG_STOP => Message::GracefulStop,
            _ => Message::AuthFile(frame[HEADER..].to_vec()),
        }
    }

    fn garble(&mut self, what: String) -> Result<Vec<Message>, Garbled> {
        self.garbled = true;
        self.buf = Vec::new();
        Err(Garbled(what))
    }
}

/// Reads what the runner sent since the last call and acts on it: a stop
/// request stops the event loop gracefully, an auth file is handed to
/// [`crate::ascii_auth`] for the next pass. A closed or failing standard
/// input is no request (a runtime that gives the guest no input must not
/// stop it), and neither is one that broke the framing (reported once).
#[cfg(target_os = "wasi")]
pub(crate) fn poll() {
    use std::cell::{Cell, RefCell};
    use wasip2::io::streams::InputStream;
    thread_local! {
        static STDIN: InputStream = wasip2::cli::stdin::get_stdin();
        static DECODER: RefCell<Decoder> = RefCell::new(Decoder::default());
        /// Standard input closed, failed or garbled: nobody can ask any more.
        static DEAF: Cell<bool> = const { Cell::new(false) };
    }
    while !DEAF.get() {
        let want = DECODER.with_borrow(Decoder::want) as u64;
        let bytes = match STDIN.with(|s| s.read(want)) {
            Ok(b) if b.is_empty() => return,
            Ok(b) => b,
            Err(_) => {
                DEAF.set(true);
                return;
            }
        };
        match DECODER.with_borrow_mut(|d| d.push(&bytes)) {
            Ok(messages) => messages.into_iter().for_each(deliver),
            Err(Garbled(what)) => {
                eprintln!("warning: the runner's channel sent {what}; ignoring it from now on");
                DEAF.set(true);
            }
        }
    }
}

#[cfg(target_os = "wasi")]
fn deliver(m: Message) {
    match m {
        Message::GracefulStop => crate::stop::request(true),
        Message::AuthFile(content) => crate::ascii_auth::deliver(content),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(stream: &[u8], piece: usize) -> Result<Vec<Message>, Garbled> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            // Read as the guest does: never more than the decoder wants.
            let n = d.want().min(piece).min(stream.len() - at);
            out.extend(d.push(&stream[at..at + n])?);
            at += n;
        }
        Ok(out)
    }

    #[test]
    fn frames_survive_any_read_size() {
        let mut stream = encode_auth_file(b"alice:wonderland\n").unwrap();
        stream.extend(encode_stop());
        stream.extend(encode_auth_file(b"").unwrap());
        let want = vec![
            Message::AuthFile(b"alice:wonderland\n".to_vec()),
            Message::GracefulStop,
            Message::AuthFile(Vec::new()),
        ];
        for piece in 1..=stream.len() {
            assert_eq!(decode_in_pieces(&stream, piece).unwrap(), want, "{piece}");
        }
        // All at once, more than one frame in one push.
        assert_eq!(Decoder::default().push(&stream).unwrap(), want);
    }

    #[test]
    fn the_buffer_never_holds_more_than_one_frame() {
        let big = vec![b'x'; AUTH_FILE_MAX];
        let stream = encode_auth_file(&big).unwrap();
        assert!(encode_auth_file(&[b'x'; AUTH_FILE_MAX + 1]).is_none());
        let mut d = Decoder::default();
        assert_eq!(d.want(), HEADER);
        assert!(d.push(&stream[..HEADER]).unwrap().is_empty());
        assert_eq!(d.want(), AUTH_FILE_MAX);
        let got = d.push(&stream[HEADER..]).unwrap();
        assert_eq!(got, vec![Message::AuthFile(big)]);
        assert_eq!(d.want(), HEADER);
    }

    #[test]
    fn a_broken_stream_is_refused_before_buffering() {
        let mut d = Decoder::default();
        let mut over = vec![TAG_AUTH_FILE];
        over.extend_from_slice(&(AUTH_FILE_MAX as u32 + 1).to_be_bytes());
        assert!(d.push(&over).is_err());
        assert!(d.push(&encode_stop()).is_err(), "stays refused");
        let mut d = Decoder::default();
        assert!(d.push(b"\n").unwrap().is_empty());
        assert!(d.push(b"\0\0\0\0").is_err(), "unknown tag");
        let mut d = Decoder::default();
        assert!(
            d.push(&[TAG_STOP, 0, 0, 0, 1]).is_err(),
            "stop has no payload"
        );
    }
}
