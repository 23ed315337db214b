//! Tests of discovery: the advert codec, the responder's answers to every kind of request, the
//! probe and its response parser.

use super::advert::{cbor_head, cbor_text, CANONICAL_KEYS, MAJOR_UINT};
use super::*;
use crate::wire::coap::CoapOption;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

fn advert() -> Advert {
    let mut a = Advert::new([7; 32], "living-room speaker", "speaker", 40_000);
    a.caps = vec!["speaker".into(), "microphone".into()];
    a.pair = true;
    a
}

fn peer() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 50_000)
}

fn responder() -> Responder {
    Responder::new(advert()).with_first_message_id(0x1000)
}

fn request(ty: MessageType, code: Code, mid: u16, path: &str) -> CoapMessage {
    let mut m = CoapMessage::new(ty, code, mid).with_token(Token::from([0xA1, 0xB2, 0xC3, 0xD4]));
    m.push_uri_path(path).unwrap();
    m
}

/// Sends `m` unicast and returns the parsed answer.
fn ask(r: &mut Responder, m: &CoapMessage) -> Option<CoapMessage> {
    let now = Instant::now();
    let out = r.handle_request(now, peer(), &m.to_bytes(), false, Duration::from_millis(50))?;
    assert_eq!(out.to, peer());
    assert_eq!(out.send_at, now, "unicast answers go out at once");
    Some(CoapMessage::parse(&out.datagram).unwrap())
}

fn ask_multicast(
    r: &mut Responder,
    m: &CoapMessage,
    leisure: Duration,
) -> Option<(Duration, CoapMessage)> {
    let now = Instant::now();
    let out = r.handle_request(now, peer(), &m.to_bytes(), true, leisure)?;
    Some((
        out.send_at - now,
        CoapMessage::parse(&out.datagram).unwrap(),
    ))
}

#[test]
fn device_id_matches_fixed_vectors() {
    // Computed independently: sha256(b"softbus/1 device-id" + pk)[:8].
    assert_eq!(
        hex(&device_id_from_public_key(&[0; 32])),
        "70ba1f59b3a0aab4"
    );
    let mut pk = [0u8; 32];
    for (i, b) in pk.iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(hex(&device_id_from_public_key(&pk)), "bb910dce1f1c872d");
}

#[test]
fn advert_round_trips() {
    let a = advert();
    let bytes = a.to_cbor();
    assert_eq!(Advert::from_cbor(&bytes).unwrap(), a);
    a.check_device_id().unwrap();
}

#[test]
fn advert_encoding_is_core_deterministic() {
    let a = advert();
    // Build the same map with ciborium, keys in RFC 8949 section 4.2.1 order.
    let text = |s: &str| Value::Text(s.to_owned());
    let map = Value::Map(vec![
        (text("v"), Value::Integer(1.into())),
        (text("hb"), Value::Integer(a.hb.into())),
        (text("id"), Value::Bytes(a.id.to_vec())),
        (text("pk"), Value::Bytes(a.pk.to_vec())),
        (text("pt"), Value::Integer(a.pt.into())),
        (
            text("caps"),
            Value::Array(a.caps.iter().map(|c| text(c)).collect()),
        ),
        (text("name"), text(&a.name)),
        (text("pair"), Value::Bool(a.pair)),
        (text("port"), Value::Integer(a.port.into())),
        (text("type"), text(&a.device_type)),
    ]);
    let mut expected = Vec::new();
    ciborium::ser::into_writer(&map, &mut expected).unwrap();
    assert_eq!(a.to_cbor(), expected);
    // Encoded keys are in strictly increasing bytewise order.
    let encoded: Vec<Vec<u8>> = CANONICAL_KEYS
        .iter()
        .map(|k| {
            let mut out = Vec::new();
            cbor_text(&mut out, k);
            out
        })
        .collect();
    assert!(encoded.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn cbor_heads_are_shortest() {
    let head = |n: u64| {
        let mut out = Vec::new();
        cbor_head(&mut out, MAJOR_UINT, n);
        out
    };
    assert_eq!(head(23), [0x17]);
    assert_eq!(head(24), [0x18, 24]);
    assert_eq!(head(255), [0x18, 0xFF]);
    assert_eq!(head(256), [0x19, 1, 0]);
    assert_eq!(head(65_536), [0x1A, 0, 1, 0, 0]);
    assert_eq!(
        head(u64::from(u32::MAX) + 1),
        [0x1B, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

/// The advert as a ciborium map, to tamper with.
fn advert_map() -> Vec<(Value, Value)> {
    match ciborium::de::from_reader::<Value, _>(advert().to_cbor().as_slice()).unwrap() {
        Value::Map(m) => m,
        _ => unreachable!(),
    }
}

fn encode(map: Vec<(Value, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&Value::Map(map), &mut out).unwrap();
    out
}

fn with_field(key: &str, value: Value) -> Vec<u8> {
    let mut map = advert_map();
    for entry in &mut map {
        if entry.0 == Value::Text(key.into()) {
            entry.1 = value.clone();
        }
    }
    encode(map)
}

fn without_field(key: &str) -> Vec<u8> {
    let mut map = advert_map();
    map.retain(|(k, _)| *k != Value::Text(key.into()));
    encode(map)
}

#[test]
fn advert_errors_name_the_field() {
    use DiscoveryError as E;
    let cases: Vec<(Vec<u8>, DiscoveryError)> = vec![
        (
            with_field("v", Value::Integer(2.into())),
            E::UnsupportedVersion(2),
        ),
        (
            with_field("v", Value::Integer(1000.into())),
            E::OutOfRange {
                field: "v",
                value: 1000,
                max: 255,
            },
        ),
        (
            with_field("id", Value::Bytes(vec![0; 7])),
            E::WrongSize {
                field: "id",
                expected: 8,
                actual: 7,
            },
        ),
        (
            with_field("pk", Value::Bytes(vec![0; 33])),
            E::WrongSize {
                field: "pk",
                expected: 32,
                actual: 33,
            },
        ),
        (
            with_field("pk", Value::Text("key".into())),
            E::WrongType {
                field: "pk",
                expected: "bstr",
                found: "tstr",
            },
        ),
        (
            with_field("name", Value::Bytes(vec![])),
            E::WrongType {
                field: "name",
                expected: "tstr",
                found: "bstr",
            },
        ),
        (
            with_field("port", Value::Integer(65_536.into())),
            E::OutOfRange {
                field: "port",
                value: 65_536,
                max: 65_535,
            },
        ),
        (
            with_field("hb", Value::Integer((-1).into())),
            E::OutOfRange {
                field: "hb",
                value: -1,
                max: u64::from(u32::MAX),
            },
        ),
        (
            with_field("pt", Value::Float(1.5)),
            E::WrongType {
                field: "pt",
                expected: "uint",
                found: "float",
            },
        ),
        (
            with_field("pair", Value::Integer(1.into())),
            E::WrongType {
                field: "pair",
                expected: "bool",
                found: "uint",
            },
        ),
        (
            with_field("caps", Value::Array(vec![Value::Integer(3.into())])),
            E::WrongType {
                field: "caps",
                expected: "an array of tstr",
                found: "uint",
            },
        ),
        (
            with_field("caps", Value::Text("camera".into())),
            E::WrongType {
                field: "caps",
                expected: "an array of tstr",
                found: "tstr",
            },
        ),
        (without_field("type"), E::MissingField("type")),
        (without_field("v"), E::MissingField("v")),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            Advert::from_cbor(&bytes),
            Err(expected.clone()),
            "{expected}"
        );
    }
}

#[test]
fn advert_rejects_duplicates_trailing_bytes_and_non_maps() {
    let mut map = advert_map();
    map.push((Value::Text("name".into()), Value::Text("again".into())));
    assert_eq!(
        Advert::from_cbor(&encode(map)),
        Err(DiscoveryError::DuplicateField("name"))
    );
    let mut bytes = advert().to_cbor();
    bytes.push(0x00);
    assert_eq!(
        Advert::from_cbor(&bytes),
        Err(DiscoveryError::TrailingBytes(1))
    );
    assert_eq!(
        Advert::from_cbor(&[0x80]),
        Err(DiscoveryError::NotAMap("array"))
    );
    assert!(matches!(
        Advert::from_cbor(&[]),
        Err(DiscoveryError::Cbor(_))
    ));
    assert!(matches!(
        Advert::from_cbor(&[0xA1, 0x61]),
        Err(DiscoveryError::Cbor(_))
    ));
}

#[test]
fn advert_ignores_unknown_keys() {
    let mut map = advert_map();
    map.push((Value::Text("future".into()), Value::Array(vec![])));
    map.push((Value::Integer(7.into()), Value::Null));
    assert_eq!(Advert::from_cbor(&encode(map)).unwrap(), advert());
}

#[test]
fn device_id_mismatch_is_reported() {
    let mut a = advert();
    a.id[0] ^= 1;
    let err = a.check_device_id().unwrap_err();
    assert!(matches!(err, DiscoveryError::DeviceIdMismatch { .. }));
    assert!(err.to_string().contains(&hex(&a.id)), "{err}");
}

#[test]
fn get_device_con_is_answered_with_piggybacked_ack() {
    let mut r = responder();
    let req = request(
        MessageType::Confirmable,
        Code::GET,
        0x4242,
        "/softbus/v1/device",
    );
    let resp = ask(&mut r, &req).unwrap();
    assert_eq!(resp.msg_type, MessageType::Acknowledgement);
    assert_eq!(resp.message_id, 0x4242);
    assert_eq!(resp.token, req.token);
    assert_eq!(resp.code, Code::CONTENT);
    assert_eq!(resp.content_format(), Ok(Some(ContentFormat::CBOR)));
    assert_eq!(Advert::from_cbor(&resp.payload).unwrap(), advert());
    assert_eq!(
        r.next_message_id(),
        0x1000,
        "piggybacked answers use the request's ID"
    );
}

#[test]
fn get_device_non_is_answered_with_non_from_the_counter() {
    let mut r = responder().with_first_message_id(0xFFFF);
    let req = request(
        MessageType::NonConfirmable,
        Code::GET,
        0x4242,
        "softbus/v1/device",
    );
    let first = ask(&mut r, &req).unwrap();
    let second = ask(&mut r, &req).unwrap();
    assert_eq!(first.msg_type, MessageType::NonConfirmable);
    assert_eq!(first.message_id, 0xFFFF);
    assert_eq!(second.message_id, 0x0000, "the counter wraps");
    assert_eq!(first.token, req.token);
    assert_eq!(first.code, Code::CONTENT);
    assert_eq!(first.payload, advert().to_cbor());
}

#[test]
fn multicast_answers_wait_for_the_leisure() {
    let mut r = responder();
    let req = request(
        MessageType::NonConfirmable,
        Code::GET,
        1,
        "softbus/v1/device",
    );
    let (delay, resp) = ask_multicast(&mut r, &req, Duration::from_millis(37)).unwrap();
    assert_eq!(delay, Duration::from_millis(37));
    assert_eq!(resp.code, Code::CONTENT);
    let (delay, _) = ask_multicast(&mut r, &req, Duration::from_secs(5)).unwrap();
    assert_eq!(delay, MAX_LEISURE, "leisure is capped at 100 ms");
}

#[test]
fn cap_filter_selects_devices() {
    let mut r = responder();
    let mut matching = request(
        MessageType::NonConfirmable,
        Code::GET,
        1,
        "softbus/v1/device",
    );
    matching.push_uri_query("cap=microphone").unwrap();
    matching.push_uri_query("other=ignored").unwrap();
    assert_eq!(ask(&mut r, &matching).unwrap().code, Code::CONTENT);
    assert!(ask_multicast(&mut r, &matching, Duration::ZERO).is_some());

    let mut missing = request(
        MessageType::NonConfirmable,
        Code::GET,
        2,
        "softbus/v1/device",
    );
    missing.push_uri_query("cap=camera").unwrap();
    assert!(
        ask_multicast(&mut r, &missing, Duration::ZERO).is_none(),
        "MUST NOT answer multicast"
    );
    let resp = ask(&mut r, &missing).unwrap();
    assert_eq!(resp.code, Code::NOT_FOUND, "unicast says why");
    assert_eq!(resp.token, missing.token);

    let mut two = matching.clone();
    two.push_uri_query("cap=camera").unwrap();
    assert_eq!(
        ask(&mut r, &two).unwrap().code,
        Code::NOT_FOUND,
        "every filter must match"
    );

    let mut empty = request(
        MessageType::NonConfirmable,
        Code::GET,
        3,
        "softbus/v1/device",
    );
    empty.push_uri_query("cap=").unwrap();
    assert_eq!(ask(&mut r, &empty).unwrap().code, Code::BAD_REQUEST);
    assert!(ask_multicast(&mut r, &empty, Duration::ZERO).is_none());
    assert_eq!(r.malformed_count(), 0);
}

#[test]
fn well_known_core_lists_the_device_resource() {
    let mut r = responder();
    let req = request(MessageType::Confirmable, Code::GET, 9, "/.well-known/core");
    let resp = ask(&mut r, &req).unwrap();
    assert_eq!(resp.code, Code::CONTENT);
    assert_eq!(resp.content_format(), Ok(Some(ContentFormat::LINK_FORMAT)));
    assert_eq!(resp.payload, CORE_LINK.as_bytes());
    assert_eq!(
        std::str::from_utf8(&resp.payload).unwrap(),
        r#"</softbus/v1/device>;rt="softbus.device";ct=60"#
    );
    assert!(ask_multicast(&mut r, &req.clone_as_non(), Duration::ZERO).is_some());
}

#[test]
fn well_known_core_filters_by_link_attributes() {
    let mut r = responder();
    for (query, matches) in [
        ("rt=softbus.device", true),
        ("rt=softbus*", true),
        ("ct=60", true),
        ("href=/softbus/v1/device", true),
        ("rt=core.rd", false),
        ("ct=40", false),
        ("if=sensor", false),
        ("rt", false),
    ] {
        let mut req = request(
            MessageType::NonConfirmable,
            Code::GET,
            9,
            "/.well-known/core",
        );
        req.push_uri_query(query).unwrap();
        let resp = ask(&mut r, &req).unwrap();
        assert_eq!(resp.code, Code::CONTENT, "{query}");
        assert_eq!(resp.payload.is_empty(), !matches, "{query}");
        assert_eq!(
            ask_multicast(&mut r, &req, Duration::ZERO).is_some(),
            matches,
            "{query}"
        );
    }
}

#[test]
fn unknown_paths_are_not_found() {
    let mut r = responder();
    for path in [
        "/",
        "/softbus",
        "/softbus/v1",
        "/softbus/v1/device/",
        "/softbus/v2/device",
        "/SOFTBUS/v1/device",
    ] {
        for method in [Code::GET, Code::POST] {
            let req = request(MessageType::Confirmable, method, 5, path);
            let resp = ask(&mut r, &req).unwrap();
            assert_eq!(resp.code, Code::NOT_FOUND, "{method} {path}");
            assert_eq!(resp.message_id, 5);
            assert!(ask_multicast(&mut r, &req.clone_as_non(), Duration::ZERO).is_none());
        }
    }
}

#[test]
fn other_methods_are_not_allowed() {
    let mut r = responder();
    for path in ["/softbus/v1/device", "/.well-known/core"] {
        for method in [
            Code::POST,
            Code::PUT,
            Code::DELETE,
            Code::FETCH,
            Code::IPATCH,
            Code::new(0, 31),
        ] {
            let req = request(MessageType::NonConfirmable, method, 5, path);
            let resp = ask(&mut r, &req).unwrap();
            assert_eq!(resp.code, Code::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(resp.token, req.token);
            assert!(ask_multicast(&mut r, &req, Duration::ZERO).is_none());
        }
    }
}

#[test]
fn accept_must_match_the_resource() {
    let mut r = responder();
    let mut req = request(MessageType::Confirmable, Code::GET, 5, "/softbus/v1/device");
    req.set_accept(ContentFormat::CBOR);
    assert_eq!(ask(&mut r, &req).unwrap().code, Code::CONTENT);
    req.set_accept(ContentFormat::JSON);
    assert_eq!(ask(&mut r, &req).unwrap().code, Code::NOT_ACCEPTABLE);
}

#[test]
fn critical_options_that_cannot_be_honoured() {
    let mut r = responder();
    let with = |number: u16, value: &[u8]| {
        let mut req = request(MessageType::Confirmable, Code::GET, 5, "/softbus/v1/device");
        req.push_option(CoapOption::new(OptionNumber(number), value).unwrap());
        req
    };
    // Block2 (unsupported), If-Match, an unknown critical option, a bad Uri-Host, a repeated Accept.
    let mut repeated = with(17, &[60]);
    repeated.push_option(CoapOption::new(OptionNumber::ACCEPT, vec![60]).unwrap());
    for req in [
        with(23, &[0x06]),
        with(1, b""),
        with(2049, b"x"),
        with(3, b""),
        repeated,
    ] {
        let resp = ask(&mut r, &req).unwrap();
        assert_eq!(resp.code, Code::BAD_OPTION);
        assert_eq!(resp.msg_type, MessageType::Acknowledgement);
        assert!(
            ask(&mut r, &req.clone_as_non()).is_none(),
            "a rejected NON is dropped"
        );
    }
    // Elective options are ignored; Uri-Host and Uri-Port are accepted.
    for req in [
        with(4, b"etag"),
        with(2048, b"x"),
        with(3, b"device.local"),
        with(7, &[0x16, 0x33]),
    ] {
        assert_eq!(ask(&mut r, &req).unwrap().code, Code::CONTENT);
    }
    assert_eq!(
        ask(&mut r, &with(35, b"coap://elsewhere/")).unwrap().code,
        Code::PROXYING_NOT_SUPPORTED
    );
    assert_eq!(r.malformed_count(), 0);
}

#[test]
fn malformed_non_is_ignored_and_counted() {
    let mut r = responder();
    // NON, TKL 2, token truncated.
    assert!(r
        .handle_request(
            Instant::now(),
            peer(),
            &[0x52, 0x01, 0, 1, 0xAA],
            false,
            Duration::ZERO
        )
        .is_none());
    // Shorter than a header.
    assert!(r
        .handle_request(Instant::now(), peer(), &[0x50], false, Duration::ZERO)
        .is_none());
    assert!(r
        .handle_request(Instant::now(), peer(), &[], false, Duration::ZERO)
        .is_none());
    assert_eq!(r.malformed_count(), 3);
}

#[test]
fn malformed_con_is_reset() {
    let mut r = responder();
    // CON GET, MID 0xBEEF, payload marker with no payload.
    let out = r
        .handle_request(
            Instant::now(),
            peer(),
            &[0x40, 0x01, 0xBE, 0xEF, 0xFF],
            false,
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(out.datagram, [0x70, 0x00, 0xBE, 0xEF]);
    // Reserved token length.
    let out = r
        .handle_request(
            Instant::now(),
            peer(),
            &[0x4A, 0x01, 0x00, 0x07],
            false,
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(
        CoapMessage::parse(&out.datagram).unwrap(),
        CoapMessage::reset(7)
    );
    // Never on multicast, never for another version.
    assert!(r
        .handle_request(
            Instant::now(),
            peer(),
            &[0x40, 0x01, 0xBE, 0xEF, 0xFF],
            true,
            Duration::ZERO
        )
        .is_none());
    assert!(r
        .handle_request(
            Instant::now(),
            peer(),
            &[0x80, 0x01, 0xBE, 0xEF],
            false,
            Duration::ZERO
        )
        .is_none());
    assert_eq!(r.malformed_count(), 4);
}

#[test]
fn ping_is_reset_and_empty_non_is_malformed() {
    let mut r = responder();
    let resp = ask(
        &mut r,
        &CoapMessage::new(MessageType::Confirmable, Code::EMPTY, 77),
    )
    .unwrap();
    assert_eq!(resp, CoapMessage::reset(77));
    assert_eq!(r.malformed_count(), 0);
    assert!(ask(
        &mut r,
        &CoapMessage::new(MessageType::NonConfirmable, Code::EMPTY, 78)
    )
    .is_none());
    assert_eq!(r.malformed_count(), 1);
}

#[test]
fn acks_resets_and_responses_are_not_answered() {
    let mut r = responder();
    let mut content = request(MessageType::NonConfirmable, Code::CONTENT, 1, "");
    content.payload = advert().to_cbor();
    for m in [
        CoapMessage::empty_ack(1),
        CoapMessage::reset(1),
        request(MessageType::Acknowledgement, Code::CONTENT, 1, ""),
        request(
            MessageType::Acknowledgement,
            Code::GET,
            1,
            "softbus/v1/device",
        ),
        request(MessageType::Reset, Code::GET, 1, "softbus/v1/device"),
        content.clone(),
    ] {
        assert!(ask(&mut r, &m).is_none(), "{m:?}");
    }
    assert_eq!(r.malformed_count(), 0);
    // A Confirmable response we never asked for is rejected.
    content.msg_type = MessageType::Confirmable;
    assert_eq!(ask(&mut r, &content).unwrap(), CoapMessage::reset(1));
}

#[test]
fn reserved_classes_and_multicast_con_are_malformed() {
    let mut r = responder();
    let reserved = request(
        MessageType::Confirmable,
        Code::new(7, 1),
        3,
        "softbus/v1/device",
    );
    assert_eq!(ask(&mut r, &reserved).unwrap(), CoapMessage::reset(3));
    assert!(ask(&mut r, &reserved.clone_as_non()).is_none());
    let con = request(MessageType::Confirmable, Code::GET, 4, "softbus/v1/device");
    assert!(ask_multicast(&mut r, &con, Duration::ZERO).is_none());
    assert_eq!(r.malformed_count(), 3);
}

#[test]
fn set_advert_changes_the_answer() {
    let mut r = responder();
    let mut a = advert();
    a.pair = false;
    a.caps.push("camera".into());
    r.set_advert(a.clone());
    assert_eq!(r.advert(), &a);
    let mut req = request(
        MessageType::NonConfirmable,
        Code::GET,
        1,
        "softbus/v1/device",
    );
    req.push_uri_query("cap=camera").unwrap();
    assert_eq!(
        Advert::from_cbor(&ask(&mut r, &req).unwrap().payload).unwrap(),
        a
    );
}

#[test]
fn probe_is_a_non_get_for_the_device() {
    let probe = Probe::new(0x0102, [1, 2, 3, 4], Some("camera")).unwrap();
    let m = CoapMessage::parse(&probe.to_bytes()).unwrap();
    assert_eq!(m.msg_type, MessageType::NonConfirmable);
    assert_eq!(m.code, Code::GET);
    assert_eq!(m.message_id, 0x0102);
    assert_eq!(m.token.as_bytes(), &[1, 2, 3, 4]);
    assert_eq!(m.uri_path().unwrap(), DEVICE_PATH);
    assert_eq!(m.uri_query().unwrap(), vec!["cap=camera"]);
    assert!(m.payload.is_empty());
    // Golden bytes: NON GET tkl 4, Uri-Path softbus/v1/device, Uri-Query cap=camera.
    let plain = Probe::new(0x0102, [1, 2, 3, 4], None).unwrap();
    let mut expected = vec![0x54, 0x01, 0x01, 0x02, 1, 2, 3, 4, 0xB7];
    expected.extend_from_slice(b"softbus");
    expected.push(0x02);
    expected.extend_from_slice(b"v1");
    expected.push(0x06);
    expected.extend_from_slice(b"device");
    assert_eq!(plain.to_bytes(), expected);

    assert_eq!(
        Probe::new(1, [0; 4], Some("")),
        Err(DiscoveryError::InvalidCapFilter { len: 0 })
    );
    assert!(Probe::new(1, [0; 4], Some(&"x".repeat(MAX_CAP_FILTER_LEN))).is_ok());
    assert!(Probe::new(1, [0; 4], Some(&"x".repeat(MAX_CAP_FILTER_LEN + 1))).is_err());
}

#[test]
fn probe_and_responder_talk() {
    let mut r = responder();
    let probe = Probe::new(9, [9, 8, 7, 6], Some("speaker")).unwrap();
    let out = r
        .handle_request(
            Instant::now(),
            peer(),
            &probe.to_bytes(),
            true,
            Duration::from_millis(3),
        )
        .unwrap();
    assert_eq!(probe.parse_response(&out.datagram).unwrap(), advert());
    let other = Probe::new(9, [1, 1, 1, 1], None).unwrap();
    assert!(matches!(
        other.parse_response(&out.datagram),
        Err(DiscoveryError::TokenMismatch { .. })
    ));
    let camera = Probe::new(10, [5; 4], Some("camera")).unwrap();
    assert!(r
        .handle_request(
            Instant::now(),
            peer(),
            &camera.to_bytes(),
            true,
            Duration::ZERO
        )
        .is_none());
    let out = r
        .handle_request(
            Instant::now(),
            peer(),
            &camera.to_bytes(),
            false,
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(
        camera.parse_response(&out.datagram),
        Err(DiscoveryError::UnexpectedCode(Code::NOT_FOUND))
    );
}

#[test]
fn parse_response_checks_everything() {
    let token = [1, 2, 3, 4];
    let good = || {
        let mut m = CoapMessage::new(MessageType::NonConfirmable, Code::CONTENT, 1)
            .with_token(Token::from(token))
            .with_payload(advert().to_cbor());
        m.set_content_format(ContentFormat::CBOR);
        m
    };
    assert_eq!(parse_response(&good().to_bytes(), &token), Ok(advert()));
    assert_eq!(
        parse_response(&CoapMessage::reset(1).to_bytes(), &token),
        Err(DiscoveryError::Reset)
    );
    assert!(matches!(
        parse_response(&[0x50], &token),
        Err(DiscoveryError::Coap(_))
    ));

    let mut m = good();
    m.set_content_format(ContentFormat::JSON);
    assert_eq!(
        parse_response(&m.to_bytes(), &token),
        Err(DiscoveryError::UnexpectedContentFormat(Some(50)))
    );
    m.options.clear();
    assert_eq!(
        parse_response(&m.to_bytes(), &token),
        Err(DiscoveryError::UnexpectedContentFormat(None))
    );

    let mut m = good();
    m.payload.clear();
    assert_eq!(
        parse_response(&m.to_bytes(), &token),
        Err(DiscoveryError::MissingPayload)
    );

    let mut a = advert();
    a.id = [0; 8];
    let m = good().with_payload(a.to_cbor());
    assert!(matches!(
        parse_response(&m.to_bytes(), &token),
        Err(DiscoveryError::DeviceIdMismatch { .. })
    ));

    let mut a = advert();
    a.v = 3;
    let m = good().with_payload(a.to_cbor());
    assert_eq!(
        parse_response(&m.to_bytes(), &token),
        Err(DiscoveryError::UnsupportedVersion(3))
    );
}

#[test]
fn error_messages_read_well() {
    let e = DiscoveryError::WrongSize {
        field: "pk",
        expected: 32,
        actual: 31,
    };
    assert_eq!(
        e.to_string(),
        "advert field \"pk\" must be 32 bytes, found 31"
    );
    let e = DiscoveryError::UnexpectedCode(Code::NOT_FOUND);
    assert_eq!(e.to_string(), "expected a 2.05 Content response, got 4.04");
}

trait CloneAsNon {
    fn clone_as_non(&self) -> CoapMessage;
}

impl CloneAsNon for CoapMessage {
    fn clone_as_non(&self) -> CoapMessage {
        let mut m = self.clone();
        m.msg_type = MessageType::NonConfirmable;
        m
    }
}

fn arb_advert() -> impl Strategy<Value = Advert> {
    (
        any::<[u8; 32]>(),
        ".{0,40}",
        "[a-z]{0,12}",
        proptest::collection::vec("[a-z_]{1,12}", 0..6),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(pk, name, device_type, caps, port, hb, pt, pair)| {
            let mut a = Advert::new(pk, name, device_type, port);
            a.caps = caps;
            a.hb = hb;
            a.pt = pt;
            a.pair = pair;
            a
        })
}

fn arb_request() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..4,
        prop_oneof![
            Just(Code::GET),
            Just(Code::POST),
            any::<u8>().prop_map(Code)
        ],
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..=8),
        prop_oneof![
            Just("/softbus/v1/device"),
            Just("/.well-known/core"),
            Just("/softbus"),
            Just(""),
        ],
        proptest::collection::vec(
            (
                prop_oneof![Just(15u16), Just(17), Just(3), Just(23), any::<u16>()],
                proptest::collection::vec(any::<u8>(), 0..20),
            ),
            0..4,
        ),
    )
        .prop_map(|(ty, code, mid, token, path, options)| {
            let mut m = CoapMessage::new(MessageType::from_bits(ty), code, mid);
            if code.is_empty() {
                return m.to_bytes(); // An Empty message carries nothing else.
            }
            m.token = Token::new(&token).unwrap();
            m.push_uri_path(path).unwrap();
            for (n, v) in options {
                m.push_option(CoapOption::new(OptionNumber(n), v).unwrap());
            }
            m.to_bytes()
        })
}

proptest! {
    #[test]
    fn advert_round_trips_for_any_advert(a in arb_advert()) {
        let bytes = a.to_cbor();
        prop_assert_eq!(Advert::from_cbor(&bytes).unwrap(), a.clone());
        let mut m = CoapMessage::new(MessageType::Acknowledgement, Code::CONTENT, 1)
            .with_token(Token::from([1, 2, 3, 4]))
            .with_payload(bytes);
        m.set_content_format(ContentFormat::CBOR);
        prop_assert_eq!(parse_response(&m.to_bytes(), &[1, 2, 3, 4]).unwrap(), a);
    }

    #[test]
    fn from_cbor_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Advert::from_cbor(&bytes);
        let _ = parse_response(&bytes, &[1, 2, 3, 4]);
    }

    #[test]
    fn from_cbor_never_panics_on_mutated_adverts(
        a in arb_advert(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = a.to_cbor();
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = Advert::from_cbor(&bytes);
    }

    #[test]
    fn responder_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        multicast in any::<bool>(),
        leisure_ms in 0u64..1000,
    ) {
        let mut r = responder();
        let now = Instant::now();
        if let Some(out) = r.handle_request(now, peer(), &bytes, multicast, Duration::from_millis(leisure_ms)) {
            prop_assert!(CoapMessage::parse(&out.datagram).is_ok());
            prop_assert!(out.send_at >= now && out.send_at <= now + MAX_LEISURE);
        }
    }

    #[test]
    fn responder_answers_well_formed_requests_sanely(
        bytes in arb_request(),
        multicast in any::<bool>(),
    ) {
        let mut r = responder();
        let request = CoapMessage::parse(&bytes).unwrap();
        if let Some(out) = r.handle_request(Instant::now(), peer(), &bytes, multicast, Duration::ZERO) {
            let resp = CoapMessage::parse(&out.datagram).unwrap();
            match resp.msg_type {
                MessageType::Reset => {
                    prop_assert!(!multicast);
                    prop_assert_eq!(resp.message_id, request.message_id);
                }
                MessageType::Acknowledgement => {
                    prop_assert_eq!(request.msg_type, MessageType::Confirmable);
                    prop_assert_eq!(resp.message_id, request.message_id);
                    prop_assert_eq!(resp.token, request.token);
                }
                MessageType::NonConfirmable => {
                    prop_assert_eq!(request.msg_type, MessageType::NonConfirmable);
                    prop_assert_eq!(resp.token, request.token);
                }
                MessageType::Confirmable => prop_assert!(false, "never sends CON"),
            }
            if multicast {
                prop_assert_eq!(resp.code, Code::CONTENT);
                prop_assert!(!resp.payload.is_empty());
            }
        }
    }
}
