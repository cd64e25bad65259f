#![allow(clippy::unwrap_used)]

use crate::*;
use proptest::prelude::*;
use std::vec::Vec;

type Owned = (u8, Kind, u32, Vec<u8>);

fn frame(kind: Kind, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode(kind, id, payload, &mut v).unwrap();
    v
}

fn decode_all<const N: usize>(d: &mut Decoder<N>, bytes: &[u8]) -> Vec<Owned> {
    let mut out = Vec::new();
    d.push(bytes, &mut |f| {
        out.push((f.version, f.kind, f.id, f.payload.to_vec()))
    });
    out
}

#[test]
fn layout_is_pinned() {
    let f = frame(Kind::Request, 0x0102_0304, b"vm list");
    assert_eq!(&f[..2], b"FV");
    assert_eq!(f[2], 1);
    assert_eq!(f[3], 1);
    assert_eq!(&f[4..8], &[4, 3, 2, 1]);
    assert_eq!(&f[8..10], &[7, 0]);
    assert_eq!(&f[12..19], b"vm list");
    assert_eq!(f.len(), 7 + OVERHEAD);
    let crc = crc32fast::hash(&f[..19]);
    assert_eq!(&f[19..], &crc.to_le_bytes());
    for (k, b) in [
        (Kind::Request, 1),
        (Kind::RequestHuman, 2),
        (Kind::Input, 3),
        (Kind::Reply, 4),
        (Kind::ReplyPart, 5),
        (Kind::Event, 6),
        (Kind::Console, 7),
        (Kind::Hello, 8),
        (Kind::Subscribe, 9),
    ] {
        assert_eq!(k.to_byte(), b);
        assert_eq!(Kind::from_byte(b), k);
    }
    assert_eq!(Kind::from_byte(200), Kind::Other(200));
}

#[test]
fn encode_into_matches_encode() {
    let mut buf = [0u8; 64];
    let n = encode_into(Kind::Event, 0, b"state vm=a", &mut buf).unwrap();
    assert_eq!(&buf[..n], &frame(Kind::Event, 0, b"state vm=a")[..]);
    assert_eq!(
        encode_into(Kind::Event, 0, &[0; 60], &mut buf),
        Err(EncodeError::NoRoom)
    );
    let mut small = [0u8; 20];
    let mut sink = FixedSink::new(&mut small);
    assert_eq!(
        encode(Kind::Event, 0, b"12345", &mut sink),
        Err(EncodeError::NoRoom)
    );
    assert!(sink.is_empty());
    encode(Kind::Event, 0, b"1234", &mut sink).unwrap();
    assert_eq!(sink.len(), 20);
}

#[test]
fn round_trip_and_console_payload() {
    let mut v = Vec::new();
    encode_console(Kind::Console, 0, "web", b"hello\r\n", &mut v).unwrap();
    encode(Kind::Reply, 9, b"ok\n", &mut v).unwrap();
    let mut d = Decoder::<256>::new();
    let got = decode_all(&mut d, &v);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, Kind::Console);
    assert_eq!(split_console(&got[0].3), Some(("web", &b"hello\r\n"[..])));
    assert_eq!(got[1], (1, Kind::Reply, 9, b"ok\n".to_vec()));
    assert_eq!(d.stats().frames, 2);
    assert_eq!(d.buffered(), 0);
    assert_eq!(
        encode_console(Kind::Input, 1, "", b"x", &mut v),
        Err(EncodeError::BadName)
    );
    assert_eq!(split_console(&[0]), None);
    assert_eq!(split_console(&[5, b'a']), None);
    assert_eq!(split_console(&[1, 0xff, b'x']), None);
}

#[test]
fn garbage_is_skipped_and_counted() {
    let mut v = b"FVFVgarbage\xff\x00FV".to_vec();
    v.extend(frame(Kind::Request, 3, b"help"));
    let mut d = Decoder::<128>::new();
    let got = decode_all(&mut d, &v);
    assert_eq!(got, [(1, Kind::Request, 3, b"help".to_vec())]);
    assert!(d.stats().skipped >= 15, "{:?}", d.stats());
}

#[test]
fn oversized_frame_is_refused_then_stream_recovers() {
    let big = frame(Kind::Request, 1, &[b'a'; 200]);
    let small = frame(Kind::Request, 2, b"vm list");
    let mut d = Decoder::<128>::new();
    let mut v = big.clone();
    v.extend(&small);
    let got = decode_all(&mut d, &v);
    assert_eq!(got, [(1, Kind::Request, 2, b"vm list".to_vec())]);
    assert!(d.stats().bad_frames >= 1);
}

#[test]
fn damaged_payload_is_dropped_and_next_frame_found() {
    let mut a = frame(Kind::Request, 1, b"vm pause web");
    a[14] ^= 0x20;
    let b = frame(Kind::Request, 2, b"vm resume web");
    let mut d = Decoder::<128>::new();
    let mut v = a;
    v.extend(&b);
    let got = decode_all(&mut d, &v);
    assert_eq!(got, [(1, Kind::Request, 2, b"vm resume web".to_vec())]);
    assert_eq!(d.stats().bad_frames, 1);
}

#[test]
fn false_header_claiming_a_long_payload_does_not_swallow_frames() {
    // A header with a valid check that claims 100 bytes, then a real frame:
    // the real frame is delivered once the false one's claimed length has
    // arrived and its CRC fails.
    let mut fake = frame(Kind::Request, 7, &[0u8; 100]);
    fake.truncate(HEADER_LEN);
    let real = frame(Kind::Request, 8, b"stats");
    let mut d = Decoder::<256>::new();
    let mut v = fake;
    v.extend(&real);
    v.extend([0u8; 120]);
    let got = decode_all(&mut d, &v);
    assert_eq!(got, [(1, Kind::Request, 8, b"stats".to_vec())]);
}

fn arb_frame() -> impl Strategy<Value = Owned> {
    (
        any::<u8>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(|(k, id, p)| (VERSION, Kind::from_byte(k), id, p))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000),
                                   cut in 0usize..2000) {
        let mut d = Decoder::<64>::new();
        let cut = cut.min(bytes.len());
        let mut n = 0;
        d.push(&bytes[..cut], &mut |f| { assert!(f.payload.len() <= 48); n += 1; });
        d.push(&bytes[cut..], &mut |f| { assert!(f.payload.len() <= 48); n += 1; });
        prop_assert!(d.buffered() < 64);
        prop_assert_eq!(d.stats().frames, n);
    }

    #[test]
    fn any_split_parses_the_same(frames in proptest::collection::vec(arb_frame(), 0..8),
                                 cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let mut stream = Vec::new();
        for (_, k, id, p) in &frames {
            encode(*k, *id, p, &mut stream).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut d = Decoder::<256>::new();
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            got.extend(decode_all(&mut d, &stream[at..c]));
            at = c;
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(d.stats().skipped, 0);
    }

    #[test]
    fn frames_survive_garbage_between_them(
        frames in proptest::collection::vec(arb_frame(), 1..6),
        junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 6)) {
        // Garbage before each frame; a frame is lost only if the garbage
        // happens to form a valid frame header and CRC, which random bytes
        // do not in practice: every frame comes through.
        let mut stream = Vec::new();
        for ((_, k, id, p), j) in frames.iter().zip(&junk) {
            stream.extend(j);
            encode(*k, *id, p, &mut stream).unwrap();
        }
        // Padding so a false header's claimed length is always reached.
        stream.extend([0u8; 300]);
        let mut d = Decoder::<256>::new();
        let got = decode_all(&mut d, &stream);
        prop_assert_eq!(got, frames);
    }
}
