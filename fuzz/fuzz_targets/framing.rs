//! The framing decoder fed arbitrary bytes, all at once and split at fuzzer-chosen points.
//!
//! Invariants:
//! - no input panics the decoder;
//! - the packets (and the final error, if any) are the same however the input was split;
//! - re-encoding the packets gives back exactly the bytes the decoder consumed;
//! - after a packet, the sequence counter is one past the packet's last frame.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use ferry_core::wire::{encode_packet, Packet, PacketDecoder};
use ferry_core::DecodeError;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Cap on a packet's payload; kept small so the cap is actually hit.
    max_packet_size: u16,
    check_sequence: bool,
    initial_seq: u8,
    /// Lengths of the chunks the second decoder receives (cycled; 0 counts as 1).
    splits: Vec<u8>,
    data: Vec<u8>,
}

/// Drains every packet the decoder can give now; returns the error that stopped it, if any.
fn drain(decoder: &mut PacketDecoder, out: &mut Vec<Packet>) -> Option<DecodeError> {
    loop {
        match decoder.next_packet() {
            Ok(Some(p)) => {
                // The counter moves past the packet (one frame: payloads here are small).
                assert_eq!(decoder.sequence(), p.seq.wrapping_add(1));
                out.push(p);
            }
            Ok(None) => return None,
            Err(e) => {
                // Errors are sticky.
                assert_eq!(decoder.next_packet(), Err(e.clone()));
                assert_eq!(decoder.error(), Some(&e));
                return Some(e);
            }
        }
    }
}

fn decoder(input: &Input) -> PacketDecoder {
    let mut d = PacketDecoder::new(usize::from(input.max_packet_size));
    d.set_check_sequence(input.check_sequence);
    d.set_sequence(input.initial_seq);
    d
}

fuzz_target!(|input: Input| {
    // All at once.
    let mut whole = decoder(&input);
    whole.feed(&input.data);
    let mut whole_packets = Vec::new();
    let whole_err = drain(&mut whole, &mut whole_packets);

    // In chunks, alternating between `feed` and reading into `buffer_mut`, as drivers do.
    let mut split = decoder(&input);
    let mut split_packets = Vec::new();
    let mut split_err = None;
    let mut rest = &input.data[..];
    let mut i = 0;
    while !rest.is_empty() && split_err.is_none() {
        let len = match input.splits.get(i % input.splits.len().max(1)) {
            Some(&n) => usize::from(n).clamp(1, rest.len()),
            None => rest.len(),
        };
        let (chunk, tail) = rest.split_at(len);
        if i % 2 == 0 {
            split.feed(chunk);
        } else {
            split.buffer_mut().extend_from_slice(chunk);
        }
        rest = tail;
        i += 1;
        split_err = drain(&mut split, &mut split_packets);
    }
    if split_err.is_none() {
        split_err = drain(&mut split, &mut split_packets);
    }

    assert_eq!(whole_packets, split_packets);
    assert_eq!(whole_err, split_err);

    for p in &whole_packets {
        assert!(p.payload.len() <= usize::from(input.max_packet_size));
    }

    if whole_err.is_none() {
        assert_eq!(whole.buffered_len(), split.buffered_len());
        // The consumed prefix re-encodes from the packets. Every packet is a single frame here
        // (the cap is far below 16 MiB), so each packet's own id reproduces its header.
        let consumed = input.data.len() - whole.buffered_len();
        let mut out = BytesMut::new();
        for p in &whole_packets {
            let mut seq = p.seq;
            encode_packet(&mut out, &mut seq, &p.payload);
        }
        assert_eq!(&out[..], &input.data[..consumed]);
        if input.check_sequence {
            // With checking on, the ids run on from the initial one.
            let mut expected = input.initial_seq;
            for p in &whole_packets {
                assert_eq!(p.seq, expected);
                expected = expected.wrapping_add(1);
            }
        }
        // What is left is an incomplete packet: its header (if there) announces more than is left.
        let left = &input.data[consumed..];
        if left.len() >= 4 {
            let len = usize::from(left[0]) | usize::from(left[1]) << 8 | usize::from(left[2]) << 16;
            assert!(left.len() - 4 < len);
        }
        // The decoder encodes with its counter and advances it.
        let mut d = decoder(&input);
        let mut out = BytesMut::new();
        d.encode_packet(&mut out, b"abc");
        assert_eq!(&out[..], &[3, 0, 0, input.initial_seq, b'a', b'b', b'c']);
        assert_eq!(d.sequence(), input.initial_seq.wrapping_add(1));
    } else if let Some(err) = whole_err {
        assert!(matches!(
            err,
            DecodeError::OutOfOrder { .. } | DecodeError::PacketTooLarge { .. }
        ));
        if let DecodeError::OutOfOrder { .. } = err {
            assert!(input.check_sequence);
        }
    }
});
