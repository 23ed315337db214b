//! Fuzz targets for every decoder a SoftBus device faces, as plain functions.
//!
//! Each target takes arbitrary bytes, feeds them to one decoder of the reference (and to what
//! sits behind it), and panics only when a property fails: a decoder never panics, whatever it
//! accepts re-encodes to what it read (or to an encoding that reads back the same), and a
//! stateful decoder keeps its buffers within their bounds. Two front ends run them:
//!
//! * `cargo xtask fuzz run TARGET` (cargo-fuzz and libFuzzer, coverage-guided, nightly): the
//!   binaries in `fuzz_targets/` are one line each, calling [`run`];
//! * the corpus replay test (`fuzz/tests/replay.rs`, part of `cargo xtask test`): every input
//!   in `fixtures/fuzz/TARGET/` through the same function, on stable, in seconds.
//!
//! | target | decoder (spec) |
//! |---|---|
//! | `frame` | outer frames, `wire::frame` (8) |
//! | `message` | inner messages, HELLO and CAP_LIST CBOR, `wire::msg`, `wire::hello`, `capability` (8.1, 7.4, 10) |
//! | `coap` | CoAP discovery requests and responses, `wire::coap`, `discovery::Responder` (6) |
//! | `advert` | the advert CBOR and the BLE advertising data, `discovery::Advert`, `link::ble` (6.2, 16.3) |
//! | `control` | control-channel request lines, `control::parse_request` (CTRL) |
//! | `znp` | the ZNP byte stream and MT commands, ZCL frames, `link::znp` (16.2) |
//! | `sar` | link segmentation and reassembly, `link::sar` (16.1) |
//! | `endpoint` | whole datagrams at each stage of a connection: handshake, records, sessions, fragment reassembly, `endpoint` |

pub mod endpoint;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softbus::capability;
use softbus::discovery::{self, Advert, Responder};
use softbus::link::ble::AdvertData;
use softbus::link::sar::{self, Reassembled, Reassembler};
use softbus::link::znp::{self, zcl, Command, Decoder, FrameRepr};
use softbus::wire::coap::CoapMessage;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::hello::{Hello, MAX_NAME_LEN};
use softbus::wire::msg::Message;

/// A fuzz target: arbitrary bytes in, a panic only when a property fails.
pub type Target = fn(&[u8]);

/// Every target: its name (the `fuzz_targets/NAME.rs` binary and the `fixtures/fuzz/NAME/`
/// corpus) and its function.
pub const TARGETS: [(&str, Target); 8] = [
    ("frame", frame),
    ("message", message),
    ("coap", coap),
    ("advert", advert),
    ("control", control),
    ("znp", znp_stream),
    ("sar", sar_reassembly),
    ("endpoint", endpoint::run),
];

/// `frame`: [`Frame::parse`] never panics, and what it accepts re-encodes to exactly the input
/// (the encoding is canonical), with `buffer_len` its length and `validate` passing. A RECORD's
/// ciphertext minus the tag is where an inner message would be after decryption, so it goes
/// through [`message`] too.
pub fn frame(data: &[u8]) {
    if let Ok(frame) = Frame::parse(data) {
        assert_eq!(
            frame.to_vec(),
            data,
            "a parsed frame re-encodes to its input"
        );
        assert_eq!(
            frame.buffer_len(),
            data.len(),
            "buffer_len of a parsed frame"
        );
        assert_eq!(frame.validate(), Ok(()), "a parsed frame passes validate");
        if let Body::Record { ciphertext, .. } = &frame.body {
            message(&ciphertext[..ciphertext.len().saturating_sub(16)]);
        }
    }
}

/// `message`: [`Message::parse`] never panics and is canonical like [`frame`]; the same bytes
/// read as a HELLO payload and as a CAP_LIST body read back the same after re-encoding (a HELLO
/// name past 64 bytes cut to 64, as [`Hello::emit`] sends it).
pub fn message(data: &[u8]) {
    if let Ok(msg) = Message::parse(data) {
        assert_eq!(
            msg.to_vec(),
            data,
            "a parsed message re-encodes to its input"
        );
        assert_eq!(
            msg.buffer_len(),
            data.len(),
            "buffer_len of a parsed message"
        );
        assert_eq!(msg.validate(), Ok(()), "a parsed message passes validate");
    }
    if let Ok(hello) = Hello::parse(data) {
        let mut out = Vec::new();
        hello.emit(&mut out);
        assert_eq!(out.len(), hello.buffer_len(), "buffer_len of a HELLO");
        // A receiver takes names up to 255 bytes ([HS-14]); a sender sends at most 64 ([HS-13]),
        // so a longer name reads back cut to 64 bytes on a character boundary.
        let again = Hello::parse(&out).expect("an emitted HELLO parses");
        assert_eq!(
            (again.hb_ms, again.max_frame),
            (hello.hb_ms, hello.max_frame)
        );
        assert!(
            hello.name.starts_with(&again.name)
                && (again.name == hello.name || again.name.len() > MAX_NAME_LEN - 4),
            "a HELLO name reads back as {:?}, sent as {:?}",
            again.name,
            hello.name
        );
    }
    if let Ok(caps) = capability::decode_list(data) {
        let again = capability::decode_list(&capability::encode_list(&caps));
        assert_eq!(again.as_ref(), Ok(&caps), "a CAP_LIST reads back");
    }
}

/// `coap`: [`CoapMessage::parse`] never panics and what it accepts reads back the same after
/// [`CoapMessage::emit`]; a discovery responder given the bytes (unicast and multicast) never
/// panics and answers only with a well-formed CoAP message; a probe reading them as a response
/// never panics.
pub fn coap(data: &[u8]) {
    if let Ok(msg) = CoapMessage::parse(data) {
        let mut out = Vec::new();
        msg.emit(&mut out);
        assert_eq!(
            CoapMessage::parse(&out).as_ref(),
            Ok(&msg),
            "a CoAP message reads back"
        );
    }
    let now = Instant::now();
    let from = SocketAddr::from(([192, 0, 2, 7], 5683));
    let mut responder = Responder::new(Advert::new([7; 32], "fuzz", "speaker", 5684));
    for multicast in [false, true] {
        if let Some(out) =
            responder.handle_request(now, from, data, multicast, Duration::from_millis(10))
        {
            assert!(
                CoapMessage::parse(&out.datagram).is_ok(),
                "the responder's answer is well-formed CoAP"
            );
            assert_eq!(out.to, from, "the responder answers the request's source");
        }
    }
    let _ = discovery::parse_response(data, &[1, 2, 3, 4]);
}

/// `advert`: [`Advert::from_cbor`] never panics and what it accepts reads back the same after
/// [`Advert::to_cbor`]; the same bytes as BLE advertising data ([`AdvertData::parse`]) read
/// back the same after `emit`.
pub fn advert(data: &[u8]) {
    if let Ok(advert) = Advert::from_cbor(data) {
        let _ = advert.check_device_id();
        assert_eq!(
            Advert::from_cbor(&advert.to_cbor()).as_ref(),
            Ok(&advert),
            "an advert reads back"
        );
    }
    if let Ok(ad) = AdvertData::parse(data) {
        assert_eq!(
            AdvertData::parse(&ad.emit()).as_ref(),
            Ok(&ad),
            "BLE advertising data reads back"
        );
    }
}

/// `control`: every line of the input that is UTF-8 (the control channel answers BAD_REQUEST
/// to one that is not, before parsing) goes through [`softbus::control::parse_request`], which
/// never panics.
pub fn control(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        if let Ok(text) = std::str::from_utf8(line) {
            let _ = softbus::control::parse_request(text);
        }
    }
}

/// `znp`: the first byte sets the chunk size the serial port hands over (1 to 256 bytes); the
/// rest goes through the streaming [`Decoder`]. Every frame it returns has a valid FCS and
/// re-encodes to a frame that parses to itself; its buffer never holds more than one frame;
/// every frame goes through [`Command::from_frame`], and a command it decodes re-encodes to a
/// frame that decodes to the same command. The bytes are also read as one MT frame and as a
/// ZCL frame with Read Attributes payloads.
pub fn znp_stream(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let mut decoder = Decoder::new();
    for piece in rest.chunks(chunk) {
        decoder.push(piece);
        while let Some(frame) = decoder.next_frame() {
            check_mt_frame(&frame);
        }
        assert!(
            decoder.buffered() <= 5 + 250 + chunk,
            "the decoder holds {} bytes",
            decoder.buffered()
        );
    }
    if let Ok(frame) = FrameRepr::parse_bytes(rest) {
        check_mt_frame(&frame);
    }
    if let Ok(frame) = zcl::ZclFrame::parse(rest) {
        assert_eq!(
            zcl::ZclFrame::parse(&frame.to_bytes()).as_ref(),
            Ok(&frame),
            "a ZCL frame reads back"
        );
        let _ = zcl::parse_read_attributes(&frame.payload);
        let _ = zcl::parse_read_attributes_rsp(&frame.payload);
    }
}

fn check_mt_frame(frame: &FrameRepr) {
    let mut buf = vec![0u8; frame.buffer_len()];
    let mut view = znp::Frame::new_unchecked(&mut buf[..]);
    frame
        .emit(&mut view)
        .expect("a parsed frame fits its own length");
    assert_eq!(
        FrameRepr::parse_bytes(&buf).as_ref(),
        Ok(frame),
        "an MT frame reads back"
    );
    if let Ok(cmd) = Command::from_frame(frame) {
        let again = cmd.to_frame().expect("a decoded command re-encodes");
        assert_eq!(
            Command::from_frame(&again).as_ref(),
            Ok(&cmd),
            "an MT command reads back"
        );
    }
}

/// `sar`: bytes 0..2 set the reassembler's largest datagram (big-endian, at most 65,535); the
/// rest is segments, each `flags (u8) | len (u8) | bytes[len]`, flags bit 0 letting 1 s pass
/// first. The reassembler never panics and never returns a datagram longer than its bound.
/// Then the same bytes as a datagram, segmented for a segment size of 5 to 260 (byte 2), must
/// reassemble to exactly themselves.
pub fn sar_reassembly(data: &[u8]) {
    let [hi, lo, size, ref tail @ ..] = *data else {
        return;
    };
    let mut rest = tail;
    let max_len = usize::from(u16::from_be_bytes([hi, lo]));
    let mut now = Instant::now();
    let mut r = Reassembler::new(max_len, sar::DEFAULT_REASSEMBLY_TIMEOUT);
    while let [flags, len, ref tail @ ..] = *rest {
        let len = usize::from(len).min(tail.len());
        let (seg, next) = tail.split_at(len);
        rest = next;
        if flags & 1 != 0 {
            now += Duration::from_secs(1);
        }
        if let Reassembled::Datagram(d) = r.handle(now, seg) {
            assert!(
                d.len() <= max_len,
                "a {}-byte datagram past the bound {max_len}",
                d.len()
            );
        }
    }
    let segment_size = sar::MIN_SEGMENT + usize::from(size);
    let datagram = &data[3..];
    if let Ok(segments) = sar::segment(datagram, size, segment_size) {
        let mut r = Reassembler::new(datagram.len(), sar::DEFAULT_REASSEMBLY_TIMEOUT);
        let mut out = None;
        for (i, seg) in segments.iter().enumerate() {
            assert!(
                seg.len() <= segment_size,
                "segment {i} is {} bytes",
                seg.len()
            );
            match r.handle(now, seg) {
                Reassembled::Datagram(d) => out = Some(d),
                Reassembled::Pending => {}
                Reassembled::Discarded(e) => panic!("segment {i} of our own was discarded: {e}"),
            }
        }
        assert_eq!(
            out.as_deref(),
            Some(datagram),
            "segments reassemble to the datagram"
        );
    }
}
