//! RFC 6455 framing: the headers of the frames the server writes, and an
//! incremental reader of the frames a client sends.
//!
//! Server frames are never masked, so a frame's bytes are the same for every
//! recipient: a broadcast shares one payload and each socket only adds a
//! header of at most 11 bytes (WebSocket header and the Engine.IO `4`).
//! The reader validates everything a server must refuse (unmasked frames,
//! reserved bits, unknown opcodes, bad fragmentation, oversized or invalid
//! UTF-8 messages, malformed close frames) and says which close code to send.

use bytes::{Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes the server sends (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// Largest server frame header: 2 bytes, 8 of extended length.
pub const MAX_HEAD: usize = 10;

/// Writes the header of an unmasked, final frame carrying `len` payload
/// bytes into `out`; returns its length.
pub fn write_header(opcode: u8, len: usize, out: &mut [u8]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A close frame's payload: the code and a short reason.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    // Control frames carry at most 125 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p.into()
}

/// What a client sent, one complete unit at a time.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A complete text message (UTF-8 checked).
    Text(String),
    /// A complete binary message.
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// A close frame: the code (1005 when none was given).
    Close(u16),
}

/// Why the reader refused the stream; the connection is closed with `code`.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("websocket protocol violation ({code}): {reason}")]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Reassembles client frames into messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// The message being assembled from fragments, with its opcode.
    partial: Option<(u8, BytesMut)>,
    max_message: usize,
    max_frame: usize,
}

/// A frame header, parsed.
struct Head {
    fin: bool,
    opcode: u8,
    /// Header bytes, mask included.
    len: usize,
    mask: [u8; 4],
    payload: usize,
}

impl FrameReader {
    pub fn new(max_message: usize, max_frame: usize) -> Self {
        Self {
            partial: None,
            max_message,
            max_frame,
        }
    }

    /// How many bytes the frame starting at `buf` needs in all, once its
    /// header is readable (a reader sizes its buffer with it).
    pub fn frame_len(&self, buf: &[u8]) -> Option<usize> {
        match self.head(buf) {
            Ok(Some(h)) => Some(h.len + h.payload),
            _ => None,
        }
    }

    fn head(&self, buf: &[u8]) -> Result<Option<Head>, Violation> {
        use close_code::*;
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(violation(PROTOCOL_ERROR, "reserved bits set"));
        }
        let opcode = b0 & 0x0F;
        if b1 & 0x80 == 0 {
            return Err(violation(PROTOCOL_ERROR, "client frame not masked"));
        }
        let (len, payload) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (4, u16::from_be_bytes([buf[2], buf[3]]) as u64)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                if n >> 63 != 0 {
                    return Err(violation(PROTOCOL_ERROR, "frame length's top bit set"));
                }
                (10, n)
            }
            n => (2, n as u64),
        };
        let is_control = opcode & 0x08 != 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(violation(PROTOCOL_ERROR, "unknown opcode")),
        }
        if is_control && (!fin || payload > 125) {
            return Err(violation(
                PROTOCOL_ERROR,
                "control frame fragmented or longer than 125 bytes",
            ));
        }
        if payload > self.max_frame as u64 {
            return Err(violation(TOO_BIG, "frame too large"));
        }
        let partial_len = self.partial.as_ref().map_or(0, |(_, m)| m.len()) as u64;
        if !is_control && partial_len + payload > self.max_message as u64 {
            return Err(violation(TOO_BIG, "message too large"));
        }
        if buf.len() < len + 4 {
            return Ok(None);
        }
        let mask = buf[len..len + 4].try_into().expect("4 bytes");
        Ok(Some(Head {
            fin,
            opcode,
            len: len + 4,
            mask,
            payload: payload as usize,
        }))
    }

    /// Reads one frame from the start of `buf`. Returns the bytes it used and
    /// the message it completed, if any; `(0, None)` when `buf` holds no
    /// whole frame yet.
    pub fn read(&mut self, buf: &[u8]) -> Result<(usize, Option<Incoming>), Violation> {
        use close_code::*;
        let Some(h) = self.head(buf)? else {
            return Ok((0, None));
        };
        let total = h.len + h.payload;
        if buf.len() < total {
            return Ok((0, None));
        }
        let body = &buf[h.len..total];
        let unmask = |dst: &mut Vec<u8>| {
            dst.extend(body.iter().enumerate().map(|(i, b)| b ^ h.mask[i & 3]));
        };
        let out = match h.opcode {
            OP_PING => {
                let mut v = Vec::with_capacity(body.len());
                unmask(&mut v);
                Some(Incoming::Ping(v.into()))
            }
            OP_PONG => Some(Incoming::Pong),
            OP_CLOSE => {
                let mut v = Vec::with_capacity(body.len());
                unmask(&mut v);
                Some(Incoming::Close(parse_close(&v)?))
            }
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(violation(
                        PROTOCOL_ERROR,
                        "new message while a fragmented one is open",
                    ));
                }
                if h.fin {
                    let mut v = Vec::with_capacity(body.len());
                    unmask(&mut v);
                    Some(finish(h.opcode, v)?)
                } else {
                    let mut m = BytesMut::with_capacity(body.len());
                    m.extend(body.iter().enumerate().map(|(i, b)| b ^ h.mask[i & 3]));
                    self.partial = Some((h.opcode, m));
                    None
                }
            }
            _ => {
                // OP_CONTINUATION (head() refused the rest).
                let Some((_, m)) = self.partial.as_mut() else {
                    return Err(violation(PROTOCOL_ERROR, "continuation without a message"));
                };
                m.extend(body.iter().enumerate().map(|(i, b)| b ^ h.mask[i & 3]));
                if h.fin {
                    let (op, m) = self.partial.take().expect("checked above");
                    Some(finish(op, Vec::from(m))?)
                } else {
                    None
                }
            }
        };
        Ok((total, out))
    }
}

fn finish(opcode: u8, payload: Vec<u8>) -> Result<Incoming, Violation> {
    if opcode == OP_TEXT {
        String::from_utf8(payload)
            .map(Incoming::Text)
            .map_err(|_| violation(close_code::INVALID_PAYLOAD, "text message is not UTF-8"))
    } else {
        Ok(Incoming::Binary(payload.into()))
    }
}

/// The code of a close frame, validated (RFC 6455 §7.4).
fn parse_close(payload: &[u8]) -> Result<u16, Violation> {
    use close_code::*;
    match payload.len() {
        0 => Ok(1005),
        1 => Err(violation(PROTOCOL_ERROR, "close frame of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(violation(PROTOCOL_ERROR, "invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(violation(INVALID_PAYLOAD, "close reason is not UTF-8"));
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame, masked.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn reader() -> FrameReader {
        FrameReader::new(1 << 20, 1 << 20)
    }

    #[test]
    fn header_lengths() {
        let mut h = [0u8; MAX_HEAD];
        assert_eq!(write_header(OP_TEXT, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 125]);
        assert_eq!(write_header(OP_TEXT, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x81, 126, 0, 126]);
        assert_eq!(write_header(OP_BINARY, 70_000, &mut h), 10);
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn reads_whole_and_partial_frames() {
        let f = client_frame(true, OP_TEXT, b"4hello");
        let mut r = reader();
        for cut in 0..f.len() {
            assert_eq!(r.read(&f[..cut]).unwrap(), (0, None), "cut at {cut}");
        }
        assert_eq!(
            r.read(&f).unwrap(),
            (f.len(), Some(Incoming::Text("4hello".into())))
        );
        let big = vec![b'x'; 70_000];
        let f = client_frame(true, OP_BINARY, &big);
        assert_eq!(
            r.read(&f).unwrap(),
            (f.len(), Some(Incoming::Binary(big.into())))
        );
    }

    #[test]
    fn assembles_fragments_around_control_frames() {
        let mut r = reader();
        let parts = [
            client_frame(false, OP_TEXT, b"4he"),
            client_frame(true, OP_PING, b"p"),
            client_frame(false, OP_CONTINUATION, b"ll"),
            client_frame(true, OP_CONTINUATION, b"o"),
        ];
        let got: Vec<_> = parts.iter().map(|f| r.read(f).unwrap().1).collect();
        assert_eq!(
            got,
            [
                None,
                Some(Incoming::Ping(Bytes::from_static(b"p"))),
                None,
                Some(Incoming::Text("4hello".into()))
            ]
        );
    }

    #[test]
    fn refuses_what_rfc6455_refuses() {
        let code = |frames: &[Vec<u8>]| {
            let mut r = FrameReader::new(1000, 1000);
            for f in frames {
                if let Err(v) = r.read(f) {
                    return Some(v.code);
                }
            }
            None
        };
        let mut unmasked = client_frame(true, OP_TEXT, b"4x");
        unmasked[1] &= 0x7F;
        assert_eq!(code(&[unmasked]), Some(1002));
        let mut rsv = client_frame(true, OP_TEXT, b"4x");
        rsv[0] |= 0x40;
        assert_eq!(code(&[rsv]), Some(1002));
        assert_eq!(code(&[client_frame(true, 0x3, b"")]), Some(1002));
        assert_eq!(
            code(&[client_frame(true, OP_CONTINUATION, b"x")]),
            Some(1002)
        );
        assert_eq!(
            code(&[
                client_frame(false, OP_TEXT, b"4"),
                client_frame(true, OP_TEXT, b"4")
            ]),
            Some(1002)
        );
        assert_eq!(code(&[client_frame(false, OP_PING, b"")]), Some(1002));
        assert_eq!(code(&[client_frame(true, OP_PING, &[0; 126])]), Some(1002));
        assert_eq!(
            code(&[client_frame(true, OP_TEXT, &[0xC3, 0x28])]),
            Some(1007)
        );
        assert_eq!(
            code(&[client_frame(true, OP_TEXT, &[b'x'; 1001])]),
            Some(1009)
        );
        assert_eq!(
            code(&[
                client_frame(false, OP_TEXT, &[b'x'; 600]),
                client_frame(true, OP_CONTINUATION, &[b'x'; 600])
            ]),
            Some(1009)
        );
        assert_eq!(code(&[client_frame(true, OP_CLOSE, &[3])]), Some(1002));
        assert_eq!(
            code(&[client_frame(true, OP_CLOSE, &1005u16.to_be_bytes())]),
            Some(1002)
        );
        assert_eq!(
            code(&[client_frame(true, OP_CLOSE, &[3, 232, 0xFF])]),
            Some(1007)
        );
        assert_eq!(
            code(&[client_frame(true, OP_CLOSE, &[3, 232, b'o', b'k'])]),
            None
        );
    }

    #[test]
    fn close_payload_is_bounded() {
        let p = close_payload(1000, &"é".repeat(100));
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }
}
