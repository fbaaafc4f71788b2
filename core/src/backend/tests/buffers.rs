//! The backend's reused buffers: small commands go out as one chunk (header and payload) from
//! memory that is reused, large ones by reference; the response tracker reused by the next
//! command starts blank.

use super::*;

fn send_query(b: &mut Backend, t: Instant, sql: &[u8]) -> Vec<Bytes> {
    b.send_command(
        t,
        &Command::Query(Query {
            attributes: vec![],
            sql,
        }),
    )
    .expect("idle");
    std::iter::from_fn(|| b.poll_transmit()).collect()
}

fn chunks_len(chunks: &[Vec<u8>]) -> usize {
    chunks.iter().map(Vec::len).sum()
}

#[test]
fn small_commands_are_one_chunk_and_reuse_the_buffer() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    let chunks = send_query(&mut b, t0, b"SELECT 1");
    assert_eq!(chunks.len(), 1, "header and payload in one chunk");
    assert_eq!(&chunks[0][..], &frame(0, b"\x03SELECT 1")[..]);
    let first = chunks[0].as_ptr();
    drop(chunks);
    let evs = feed(
        &mut b,
        t0,
        1,
        &[ok_payload(ServerStatus::AUTOCOMMIT, 5, caps)],
    );
    assert_eq!(summary(&evs).affected_rows, 5);

    // Each next command continues in the same memory, or restarts at its beginning once the
    // earlier chunks are gone: never a new allocation.
    let mut prev = (first, chunks_len(&[frame(0, b"\x03SELECT 1")]));
    for i in 0..50 {
        let sql = format!("SELECT {i}");
        let chunks = send_query(&mut b, t0, sql.as_bytes());
        let mut expected = vec![Command::COM_QUERY];
        expected.extend_from_slice(sql.as_bytes());
        assert_eq!(&chunks[0][..], &frame(0, &expected)[..]);
        let at = chunks[0].as_ptr();
        assert!(
            at == first || at == prev.0.wrapping_add(prev.1),
            "command {i}: a new allocation"
        );
        prev = (at, chunks[0].len());
        drop(chunks);
        feed(
            &mut b,
            t0,
            1,
            &[ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)],
        );
    }
    let chunks = send_query(&mut b, t0, b"SELECT 2");
    assert_eq!(chunks.len(), 1);
    // The reused tracker starts blank: a result set, not the previous OK's counts.
    let evs = feed(
        &mut b,
        t0,
        1,
        &[
            count(1),
            column("a"),
            text_row(&[b"2"]),
            eof_ok(ServerStatus::AUTOCOMMIT, caps),
        ],
    );
    let s = summary(&evs);
    assert_eq!((s.affected_rows, s.rows, s.result_sets), (0, 1, 1));
    assert!(b.is_idle());
}

#[test]
fn large_commands_keep_their_payload_memory() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let mut payload = BytesMut::new();
    payload.extend_from_slice(&[Command::COM_QUERY]);
    payload.resize(ZERO_COPY_THRESHOLD + 10, b'x');
    let payload = payload.freeze();
    let base = payload.as_ptr();
    b.send_raw_command(t0, payload.clone()).expect("idle");
    let chunks: Vec<Bytes> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(chunks.len(), 2);
    let len = ZERO_COPY_THRESHOLD + 10;
    assert_eq!(
        &chunks[0][..],
        &[len as u8, (len >> 8) as u8, (len >> 16) as u8, 0]
    );
    assert_eq!(chunks[1].as_ptr(), base, "the payload is not copied");
    let mut dec = PacketDecoder::default();
    dec.feed(&chunks.concat());
    let Packet { seq, payload: got } = dec.next_packet().unwrap().unwrap();
    assert_eq!((seq, got), (0, payload));
}
