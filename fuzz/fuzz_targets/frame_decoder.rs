//! Fuzz the wire decoders: `Frame::parse` and `Message::parse` must never panic, and whatever
//! they accept must re-encode to exactly the input (the encoding is canonical) with
//! `buffer_len` equal to its length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::msg::Message;

fn check_message(data: &[u8]) {
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
}

fuzz_target!(|data: &[u8]| {
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
        // A record's body, minus the tag, is where an inner message would be after decryption.
        if let Body::Record { ciphertext, .. } = &frame.body {
            check_message(&ciphertext[..ciphertext.len() - 16]);
        }
    }
    check_message(data);
});
