use super::*;
use proptest::prelude::*;

fn decode_all(dec: &mut PacketDecoder) -> Vec<Packet> {
    let mut out = Vec::new();
    while let Some(p) = dec.next_packet().expect("valid stream") {
        out.push(p);
    }
    out
}

#[test]
fn single_frame_is_a_zero_copy_slice_of_the_input() {
    let mut dec = PacketDecoder::default();
    dec.feed(&[3, 0, 0, 0, b'a', b'b', b'c', 1, 0, 0, 1, b'z']);
    let base = dec.buffer_mut().as_ptr();
    let p = dec.next_packet().unwrap().unwrap();
    assert_eq!(p.seq, 0);
    assert_eq!(&p.payload[..], b"abc");
    assert_eq!(p.payload.as_ptr(), base.wrapping_add(4));
    let p = dec.next_packet().unwrap().unwrap();
    assert_eq!((p.seq, &p.payload[..]), (1, &b"z"[..]));
    assert_eq!(dec.next_packet().unwrap(), None);
    assert_eq!(dec.sequence(), 2);
    assert_eq!(dec.buffered_len(), 0);
}

#[test]
fn empty_packet_and_incomplete_input() {
    let mut dec = PacketDecoder::default();
    dec.feed(&[0, 0]);
    assert_eq!(dec.next_packet().unwrap(), None);
    dec.feed(&[0, 0]);
    let p = dec.next_packet().unwrap().unwrap();
    assert!(p.payload.is_empty());
    dec.feed(&[5, 0]);
    assert_eq!(dec.next_packet().unwrap(), None);
    dec.feed(&[0, 1, 9, 9]);
    assert_eq!(dec.next_packet().unwrap(), None);
    assert_eq!(dec.buffered_len(), 6, "a partial packet stays buffered");
    dec.feed(&[9, 9, 9]);
    assert_eq!(&dec.next_packet().unwrap().unwrap().payload[..], &[9; 5]);
}

#[test]
fn real_16mib_packets_round_trip() {
    for len in [
        MAX_FRAME_PAYLOAD - 1,
        MAX_FRAME_PAYLOAD,
        MAX_FRAME_PAYLOAD + 1,
        2 * MAX_FRAME_PAYLOAD,
    ] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        let mut seq = 7;
        encode_packet(&mut out, &mut seq, &payload);
        let frames = len / MAX_FRAME_PAYLOAD + 1;
        assert_eq!(out.len(), len + HEADER_LEN * frames, "len {len}");
        assert_eq!(seq, 7 + frames as u8);
        // The last frame is short (empty when len is a multiple of 0xFFFFFF).
        let last_header = &out[out.len() - (len % MAX_FRAME_PAYLOAD) - HEADER_LEN..];
        assert_eq!(frame_len(last_header), len % MAX_FRAME_PAYLOAD);
        assert_eq!(last_header[3], 7 + frames as u8 - 1);

        let mut dec = PacketDecoder::new(64 << 20);
        dec.set_sequence(7);
        dec.feed(&out);
        let p = dec.next_packet().unwrap().unwrap();
        assert_eq!(p.seq, 7);
        assert!(p.payload[..] == payload[..], "len {len}");
        assert_eq!(dec.sequence(), seq);
        assert_eq!(dec.next_packet().unwrap(), None);
    }
}

#[test]
fn full_frame_waits_for_its_continuation() {
    let mut dec = PacketDecoder::with_frame_limit(100, 4);
    dec.feed(&[4, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(dec.next_packet().unwrap(), None);
    dec.feed(&[0, 0, 0, 1]);
    let p = dec.next_packet().unwrap().unwrap();
    assert_eq!(&p.payload[..], &[1, 2, 3, 4]);
    assert_eq!(dec.sequence(), 2);
}

#[test]
fn oversized_announcement_fails_from_the_header_without_allocating() {
    let mut dec = PacketDecoder::new(1024);
    dec.feed(&[0xFF, 0xFF, 0xFF, 0]);
    let err = dec.next_packet().unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: MAX_FRAME_PAYLOAD,
            max: 1024
        }
    );
    assert!(dec.buffer_mut().capacity() < 1024);
    // The header was read: an ERR 1153 answering it takes the next id (MariaDB's too).
    assert_eq!(dec.sequence(), 1);
    // Sticky, even once more bytes come.
    dec.feed(&[0; 16]);
    assert_eq!(dec.next_packet().unwrap_err(), err);
    assert_eq!(dec.error(), Some(&err));
}

#[test]
fn out_of_order_frame_leaves_the_counter() {
    let mut dec = PacketDecoder::new(1024);
    dec.feed(&[1, 0, 0, 5, 0x0E]);
    assert_eq!(
        dec.next_packet().unwrap_err(),
        DecodeError::OutOfOrder {
            got: 5,
            expected: 0
        }
    );
    // The ERR 1156 goes out with id 0, as MariaDB's does.
    assert_eq!(dec.sequence(), 0);
}

#[test]
fn size_cap_counts_continuation_frames() {
    let mut dec = PacketDecoder::with_frame_limit(10, 4);
    dec.feed(&[4, 0, 0, 0, 1, 2, 3, 4, 4, 0, 0, 1, 1, 2, 3, 4]);
    assert_eq!(dec.next_packet().unwrap(), None);
    // The third header takes the total to 11, over the cap of 10, before its payload arrives.
    dec.feed(&[3, 0, 0, 2]);
    assert_eq!(
        dec.next_packet().unwrap_err(),
        DecodeError::PacketTooLarge { size: 11, max: 10 }
    );
    assert_eq!(dec.sequence(), 3, "past the refused third frame");
    // Exactly at the cap is fine.
    let mut dec = PacketDecoder::with_frame_limit(10, 4);
    dec.feed(&[
        4, 0, 0, 0, 1, 2, 3, 4, 4, 0, 0, 1, 1, 2, 3, 4, 2, 0, 0, 2, 9, 9,
    ]);
    assert_eq!(dec.next_packet().unwrap().unwrap().payload.len(), 10);
}

#[test]
fn wrong_sequence_ids_fail_and_stick() {
    let mut dec = PacketDecoder::default();
    dec.feed(&[1, 0, 0, 1, b'x']);
    let err = dec.next_packet().unwrap_err();
    assert_eq!(
        err,
        DecodeError::OutOfOrder {
            got: 1,
            expected: 0
        }
    );
    assert_eq!(dec.next_packet().unwrap_err(), err);

    // A continuation frame with a skipped id fails too.
    let mut dec = PacketDecoder::with_frame_limit(100, 2);
    dec.feed(&[2, 0, 0, 0, 1, 2, 0, 0, 0, 2]);
    assert_eq!(
        dec.next_packet().unwrap_err(),
        DecodeError::OutOfOrder {
            got: 2,
            expected: 1
        }
    );
}

#[test]
fn sequence_wraps_resets_and_is_shared_with_encoding() {
    let mut dec = PacketDecoder::default();
    dec.set_sequence(255);
    dec.feed(&[0, 0, 0, 255, 0, 0, 0, 0]);
    assert_eq!(dec.next_packet().unwrap().unwrap().seq, 255);
    assert_eq!(dec.next_packet().unwrap().unwrap().seq, 0);
    // Answering uses the next id.
    let mut out = BytesMut::new();
    dec.encode_packet(&mut out, b"ok");
    assert_eq!(&out[..], &[2, 0, 0, 1, b'o', b'k']);
    assert_eq!(dec.sequence(), 2);
    dec.reset_sequence();
    assert_eq!(dec.sequence(), 0);
    dec.feed(&[0, 0, 0, 0]);
    assert_eq!(dec.next_packet().unwrap().unwrap().seq, 0);
}

#[test]
fn unchecked_sequence_follows_the_peer() {
    let mut dec = PacketDecoder::default();
    dec.set_check_sequence(false);
    assert!(!dec.checks_sequence());
    dec.feed(&[0, 0, 0, 9, 0, 0, 0, 3]);
    assert_eq!(dec.next_packet().unwrap().unwrap().seq, 9);
    assert_eq!(dec.next_packet().unwrap().unwrap().seq, 3);
    assert_eq!(dec.sequence(), 4);
}

#[test]
fn put_header_and_take_buffered() {
    let mut out = BytesMut::new();
    put_header(&mut out, 0x123456, 42);
    assert_eq!(&out[..], &[0x56, 0x34, 0x12, 42]);

    let mut dec = PacketDecoder::default();
    dec.feed(&[1, 0, 0, 0, 7, 0x16, 0x03]);
    assert_eq!(&dec.next_packet().unwrap().unwrap().payload[..], &[7]);
    assert_eq!(&dec.take_buffered()[..], &[0x16, 0x03]);
    assert_eq!(dec.buffered_len(), 0);
}

#[test]
fn frames_iterator_matches_encoding_for_16mib() {
    let payload = Bytes::from(vec![5u8; MAX_FRAME_PAYLOAD]);
    let mut seq = 0;
    let parts: Vec<_> = frames(payload.clone(), &mut seq).collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, [0xFF, 0xFF, 0xFF, 0]);
    assert_eq!(parts[0].1.as_ptr(), payload.as_ptr(), "no copy");
    assert_eq!(parts[1].0, [0, 0, 0, 1]);
    assert!(parts[1].1.is_empty());
    assert_eq!(seq, 2);
}

const TEST_FRAME: usize = 7;

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..=3 * TEST_FRAME + 2),
            // Exact multiples of the frame size, which end with an empty frame.
            (0..=3usize).prop_map(|k| vec![0xAB; k * TEST_FRAME]),
        ],
        0..12,
    )
}

proptest! {
    #[test]
    fn stream_split_anywhere_gives_back_the_packets(
        packets in payloads(),
        start_seq in any::<u8>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut wire = BytesMut::new();
        let mut seq = start_seq;
        let mut seqs = Vec::new();
        for p in &packets {
            seqs.push(seq);
            encode_packet_with_limit(&mut wire, &mut seq, p, TEST_FRAME);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();

        let mut dec = PacketDecoder::with_frame_limit(1 << 20, TEST_FRAME);
        dec.set_sequence(start_seq);
        let mut got = Vec::new();
        for w in points.windows(2) {
            dec.feed(&wire[w[0]..w[1]]);
            got.extend(decode_all(&mut dec));
        }
        let got_payloads: Vec<Vec<u8>> = got.iter().map(|p| p.payload.to_vec()).collect();
        let got_seqs: Vec<u8> = got.iter().map(|p| p.seq).collect();
        prop_assert_eq!(got_payloads, packets);
        prop_assert_eq!(got_seqs, seqs);
        prop_assert_eq!(dec.sequence(), seq);
        prop_assert_eq!(dec.buffered_len(), 0);
    }

    #[test]
    fn frames_iterator_equals_encode(payload in prop::collection::vec(any::<u8>(), 0..40), s in any::<u8>()) {
        let mut a = BytesMut::new();
        let mut seq_a = s;
        encode_packet_with_limit(&mut a, &mut seq_a, &payload, TEST_FRAME);
        let mut b = Vec::new();
        let mut seq_b = s;
        for (h, chunk) in frames_with_limit(Bytes::from(payload), &mut seq_b, TEST_FRAME) {
            b.extend_from_slice(&h);
            b.extend_from_slice(&chunk);
        }
        prop_assert_eq!(&a[..], &b[..]);
        prop_assert_eq!(seq_a, seq_b);
    }

    #[test]
    fn a_corrupted_sequence_id_is_refused(packets in payloads(), pick in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let mut wire = BytesMut::new();
        let mut seq = 0;
        let mut headers = Vec::new();
        for p in &packets {
            // Record every frame header's offset.
            let mut off = wire.len();
            encode_packet_with_limit(&mut wire, &mut seq, p, TEST_FRAME);
            while off < wire.len() {
                headers.push(off);
                off += HEADER_LEN + frame_len(&wire[off..]);
            }
        }
        prop_assume!(!headers.is_empty());
        let at = headers[pick.index(headers.len())];
        let good = wire[at + 3];
        wire[at + 3] = good.wrapping_add(delta);
        let mut dec = PacketDecoder::with_frame_limit(1 << 20, TEST_FRAME);
        dec.feed(&wire);
        let err = loop {
            match dec.next_packet() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("corruption at {at} not detected"),
                Err(e) => break e,
            }
        };
        prop_assert_eq!(err, DecodeError::OutOfOrder { got: good.wrapping_add(delta), expected: good });
    }

    #[test]
    fn oversized_stream_never_buffers_more_than_fed(len in 11usize..200, split in 0usize..4) {
        // Frames of 4 under a cap of 10: the header that crosses the cap fails at once.
        let mut wire = BytesMut::new();
        let mut seq = 0;
        encode_packet_with_limit(&mut wire, &mut seq, &vec![1; len], 4);
        let mut dec = PacketDecoder::with_frame_limit(10, 4);
        // Feed only up to and including the third header (payload 8 bytes + 3 headers).
        dec.feed(&wire[..3 * HEADER_LEN + 8 - split.min(3)]);
        let r = dec.next_packet();
        if split == 0 {
            let too_large = matches!(r, Err(DecodeError::PacketTooLarge { max: 10, .. }));
            prop_assert!(too_large, "{:?}", r);
        } else {
            prop_assert_eq!(r, Ok(None));
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics_and_respects_the_cap(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
        check in any::<bool>(),
    ) {
        let mut dec = PacketDecoder::with_frame_limit(50, 16);
        dec.set_check_sequence(check);
        for chunk in &chunks {
            dec.feed(chunk);
            loop {
                match dec.next_packet() {
                    Ok(Some(p)) => prop_assert!(p.payload.len() <= 50),
                    Ok(None) => break,
                    Err(e) => {
                        // Sticky.
                        prop_assert_eq!(dec.next_packet(), Err(e));
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn a_drained_buffer_is_kept_when_small_and_released_after_a_burst() {
    let mut dec = PacketDecoder::default();
    let small = [3, 0, 0, 0, b'a', b'b', b'c'];
    dec.feed(&small);
    let p = decode_all(&mut dec);
    assert_eq!(p.len(), 1);
    drop(p);
    // Small: the memory stays for the next packets.
    assert!(dec.buffer_mut().capacity() > 0);

    let len = RETAINED_BUFFER + 100;
    let mut big = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 1];
    big.resize(HEADER_LEN + len, b'x');
    dec.feed(&big);
    let p = decode_all(&mut dec);
    assert_eq!(p[0].payload.len(), len);
    // Drained after a burst: the decoder holds nothing (the packet keeps its own bytes).
    assert_eq!(dec.buffered_len(), 0);
    assert_eq!(dec.buffer_mut().capacity(), 0);
    assert!(p[0].payload.iter().all(|&b| b == b'x'));

    // And it still decodes what comes next.
    dec.feed(&[1, 0, 0, 2, b'q']);
    let p = decode_all(&mut dec);
    assert_eq!((p[0].seq, &p[0].payload[..]), (2, &b"q"[..]));
}
