//! What the store keys and hashes: a target id as a key ([`encode_id`], [`decode_id`]), the
//! hash of a mapped payload ([`payload_hash`]), of a `[mirror] owner` ([`owner_hash`]), and
//! the key of a record matched by a search ([`found_key`]). Pure functions, no I/O.

use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

const TAG_TEXT: u8 = 0;
const TAG_HEX32: u8 = 1;
const TAG_UUID: u8 = 2;

/// A target id as a key: 17 bytes for a 32-hex id or a lower-case UUID, else tag + text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedId(EncodedRepr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum EncodedRepr {
    Raw([u8; 17]),
    Text(Vec<u8>),
}

impl EncodedId {
    /// The key bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            EncodedRepr::Raw(bytes) => bytes,
            EncodedRepr::Text(bytes) => bytes,
        }
    }
}

/// Encodes a target id as a key: tag 1 and 16 bytes for 32 lower-case hex digits (a
/// ProfileId), tag 2 and 16 bytes for a lower-case UUID `8-4-4-4-12` (a Connect UserId), tag
/// 0 and the UTF-8 text for anything else. Each id has exactly one encoding, and two ids share
/// one only if they are equal.
pub fn encode_id(id: &str) -> EncodedId {
    let bytes = id.as_bytes();
    if bytes.len() == 32
        && let Some(raw) = hex16(bytes)
    {
        return raw_key(TAG_HEX32, raw);
    }
    if bytes.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-')
        && let Some(raw) = hex16(
            &bytes
                .iter()
                .copied()
                .filter(|b| *b != b'-')
                .collect::<Vec<u8>>(),
        )
    {
        return raw_key(TAG_UUID, raw);
    }
    let mut text = Vec::with_capacity(bytes.len() + 1);
    text.push(TAG_TEXT);
    text.extend_from_slice(bytes);
    EncodedId(EncodedRepr::Text(text))
}

/// The target id an [`encode_id`] key stands for (its inverse).
pub fn decode_id(key: &[u8]) -> String {
    let hex = |raw: &[u8]| raw.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match key.split_first() {
        Some((&TAG_HEX32, raw)) if raw.len() == 16 => hex(raw),
        Some((&TAG_UUID, raw)) if raw.len() == 16 => {
            let h = hex(raw);
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
        Some((_, text)) => String::from_utf8_lossy(text).into_owned(),
        None => String::new(),
    }
}

fn raw_key(tag: u8, raw: [u8; 16]) -> EncodedId {
    let mut key = [0u8; 17];
    key[0] = tag;
    key[1..].copy_from_slice(&raw);
    EncodedId(EncodedRepr::Raw(key))
}

/// 32 lower-case hex digits as 16 bytes (upper case is left to the text form, so that the
/// encoding stays one-to-one).
fn hex16(digits: &[u8]) -> Option<[u8; 16]> {
    if digits.len() != 32 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut raw = [0u8; 16];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        raw[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(raw)
}

/// The 64-bit hash the state keeps of a `[mirror] owner` (xxh3-64, seed 0).
pub fn owner_hash(owner: &str) -> u64 {
    xxh3_64(owner.as_bytes())
}

/// The key under which [`SyncState::found`](super::SyncState::found) keeps where a record matched by a search was
/// found: the search key (`_email`, `Username`), the `[source] key` column and the record's
/// value of it. The column is part of it so that a config that names another key column
/// never reads the first one's entries.
pub fn found_key(search_key: &str, key_column: &str, key: &str) -> String {
    format!("{search_key}\0{key_column}\0{key}")
}

/// One field's value in a payload, by kind: the kind is part of the hash, so that a field
/// set to one value and the same field set to a list of that one value hash apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadValue<'a> {
    /// The field is cleared (`""` in UpdateProfile).
    Cleared,
    /// One value.
    One(&'a str),
    /// A list of values (multi-valued Genesys attributes), in order: the first is primary.
    List(&'a [String]),
}

/// The hash of a mapped payload: xxh3-128 (seed 0) of a canonical encoding of its
/// `(field, value)` pairs, so that the same payload always hashes the same, on any machine
/// and with any Rust version, and two different payloads never share an encoding.
///
/// The encoding: the 8 bytes `psync-p2` (the version of this encoding), the number of fields
/// as a 4-byte little-endian integer, then for each field, in order of field name (bytewise;
/// fields with the same name keep their given order): the field's length in bytes (4-byte
/// little-endian), its UTF-8 bytes, then its kind: `0` cleared; `1` one value, then the
/// value's length and bytes; `2` a list, then the number of values and each value's length
/// and bytes. The lengths keep `("ab", "c")` apart from `("a", "bc")`; a field that is kept
/// (absent) is not in the payload at all. Version `psync-p1` (before issue 20) wrote a list
/// as one pair per value and a cleared field as `""`, with no kinds: a state written with it
/// never matches a `p2` hash, so each record is read (and compared) once, then stored anew.
pub fn payload_hash(fields: &[(&str, PayloadValue<'_>)]) -> u128 {
    let mut hasher = Xxh3Default::new();
    encode_payload(fields, &mut |bytes: &[u8]| hasher.update(bytes));
    hasher.digest128()
}

/// Writes [`payload_hash`]'s encoding of `fields` to `out`, piece by piece.
fn encode_payload(fields: &[(&str, PayloadValue<'_>)], out: &mut impl FnMut(&[u8])) {
    let mut order: Vec<&(&str, PayloadValue<'_>)> = fields.iter().collect();
    order.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out(PAYLOAD_TAG);
    out(&len32(fields.len()));
    for (field, value) in order {
        put_text(out, field);
        match value {
            PayloadValue::Cleared => out(&[0]),
            PayloadValue::One(value) => {
                out(&[1]);
                put_text(out, value);
            }
            PayloadValue::List(values) => {
                out(&[2]);
                out(&len32(values.len()));
                for value in *values {
                    put_text(out, value);
                }
            }
        }
    }
}

/// A text as its length (4 little-endian bytes) and its UTF-8 bytes.
fn put_text(out: &mut impl FnMut(&[u8]), text: &str) {
    out(&len32(text.len()));
    out(text.as_bytes());
}

/// The first bytes of [`payload_hash`]'s encoding.
const PAYLOAD_TAG: &[u8; 8] = b"psync-p2";

/// A length as 4 little-endian bytes (saturating: no field or value comes near 4 GiB).
fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn decode_id_inverts_encode_id() {
        for id in [
            P1,
            "87654321-2222-1234-1234-111234567891",
            "00027a52JCGY000M",
            "ABCDEF0123456789ABCDEF0123456789",
        ] {
            assert_eq!(decode_id(encode_id(id).as_slice()), id);
        }
    }

    #[test]
    fn ids_encode_compactly_and_one_to_one() {
        assert_eq!(encode_id(P1).as_slice().len(), 17);
        assert_eq!(encode_id(P1).as_slice()[0], TAG_HEX32);
        assert_eq!(&encode_id(P1).as_slice()[1..3], &[0x01, 0x23]);
        let user = encode_id("87654321-2222-1234-1234-111234567891");
        assert_eq!(user.as_slice().len(), 17);
        assert_eq!(user.as_slice()[0], TAG_UUID);
        // The same 16 bytes as a ProfileId and as a UserId are different keys.
        assert_ne!(
            encode_id("87654321222212341234111234567891"),
            encode_id("87654321-2222-1234-1234-111234567891")
        );
        // A 16-character text is not mistaken for 16 raw bytes.
        assert_eq!(encode_id("00027a52JCGY000M").as_slice()[0], TAG_TEXT);
        assert_eq!(encode_id("x").as_slice(), b"\0x");
        assert_eq!(
            encode_id("87654321-2222-1234-1234-11123456789G").as_slice()[0],
            0
        );
    }

    // ---- payload_hash ----

    use PayloadValue::{Cleared, List, One};

    /// The encoding, written out independently of `payload_hash`, for fields already in
    /// name order.
    fn spec_encoding(sorted: &[(&str, PayloadValue<'_>)]) -> Vec<u8> {
        fn text(bytes: &mut Vec<u8>, text: &str) {
            bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        let mut bytes = b"psync-p2".to_vec();
        bytes.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
        for (field, value) in sorted {
            text(&mut bytes, field);
            match value {
                Cleared => bytes.push(0),
                One(v) => {
                    bytes.push(1);
                    text(&mut bytes, v);
                }
                List(values) => {
                    bytes.push(2);
                    bytes.extend_from_slice(&(values.len() as u32).to_le_bytes());
                    for v in *values {
                        text(&mut bytes, v);
                    }
                }
            }
        }
        bytes
    }

    /// The encoding before issue 20 (`psync-p1`): pairs of texts, a cleared field as `""` and
    /// a list as one pair per value, so kinds were lost.
    fn p1_encoding(sorted_pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut bytes = b"psync-p1".to_vec();
        bytes.extend_from_slice(&(sorted_pairs.len() as u32).to_le_bytes());
        for (field, value) in sorted_pairs {
            bytes.extend_from_slice(&(field.len() as u32).to_le_bytes());
            bytes.extend_from_slice(field.as_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(value.as_bytes());
        }
        bytes
    }

    fn list(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn payload_hash_is_xxh3_128_of_the_documented_encoding() {
        let emails = list(&["a@x.com", "b@x.com"]);
        let fields = [
            ("LastName", One("Lee")),
            ("FirstName", One("Ann")),
            ("Address.City", Cleared),
            ("EmailAddress", List(&emails)),
        ];
        let sorted = [
            ("Address.City", Cleared),
            ("EmailAddress", List(&emails)),
            ("FirstName", One("Ann")),
            ("LastName", One("Lee")),
        ];
        let encoding = spec_encoding(&sorted);
        assert_eq!(&encoding[..12], b"psync-p2\x04\0\0\0");
        assert_eq!(
            payload_hash(&fields),
            xxhash_rust::xxh3::xxh3_128(&encoding)
        );
        assert_eq!(
            payload_hash(&[]),
            xxhash_rust::xxh3::xxh3_128(&spec_encoding(&[]))
        );
    }

    #[test]
    fn a_state_of_the_old_encoding_never_matches_the_new_one() {
        // Issue 20, item 4: the old encoding hashed `x` and `["x"]` alike. A hash it stored
        // for the same payload differs from today's, so the record is read and compared once.
        let one = list(&["new@x.com"]);
        assert_ne!(
            payload_hash(&[("EmailAddress", One("new@x.com"))]),
            payload_hash(&[("EmailAddress", List(&one))])
        );
        type Case<'a> = (&'a [(&'a str, PayloadValue<'a>)], &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 3] = [
            (&[("FirstName", One("Ann"))], &[("FirstName", "Ann")]),
            (&[("FirstName", Cleared)], &[("FirstName", "")]),
            (
                &[("EmailAddress", List(&one))],
                &[("EmailAddress", "new@x.com")],
            ),
        ];
        for (new, old) in cases {
            assert_ne!(
                payload_hash(new),
                xxhash_rust::xxh3::xxh3_128(&p1_encoding(old)),
                "{new:?}"
            );
        }
    }

    #[test]
    fn payload_hash_ignores_field_order_but_not_anything_else() {
        let base = payload_hash(&[("FirstName", One("Ann")), ("LastName", One("Lee"))]);
        assert_eq!(
            base,
            payload_hash(&[("LastName", One("Lee")), ("FirstName", One("Ann"))])
        );
        for other in [
            payload_hash(&[("FirstName", One("Anne")), ("LastName", One("Lee"))]),
            payload_hash(&[("FirstName", One("Ann"))]),
            payload_hash(&[
                ("FirstName", One("Ann")),
                ("LastName", One("Lee")),
                ("EmailAddress", Cleared),
            ]),
            payload_hash(&[("FirstName", One("AnnL")), ("astName", One("ee"))]),
        ] {
            assert_ne!(base, other);
        }
        // A cleared field, an empty value and an empty list are three payloads.
        let empty: Vec<String> = Vec::new();
        let kinds = [
            payload_hash(&[("A", Cleared)]),
            payload_hash(&[("A", One(""))]),
            payload_hash(&[("A", List(&empty))]),
        ];
        assert!(kinds[0] != kinds[1] && kinds[1] != kinds[2] && kinds[0] != kinds[2]);
        // A list's order is significant (the first value is primary).
        let ab = list(&["a@x.com", "b@x.com"]);
        let ba = list(&["b@x.com", "a@x.com"]);
        assert_ne!(
            payload_hash(&[("EmailAddress", List(&ab))]),
            payload_hash(&[("EmailAddress", List(&ba))])
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::super::{PayloadValue, payload_hash};

        /// A payload as owned data: `(field, kind, values)`, kind 0 cleared, 1 one, 2 list.
        type Owned = Vec<(String, u8, Vec<String>)>;

        fn payload() -> impl Strategy<Value = Owned> {
            let text = prop_oneof![Just(String::new()), "[ab,]{0,3}"];
            let field = prop_oneof![Just("A".to_owned()), Just("B".to_owned()), "[AB.]{0,3}"];
            prop::collection::vec((field, 0u8..3, prop::collection::vec(text, 0..3)), 0..4)
        }

        fn view(payload: &Owned) -> Vec<(&str, PayloadValue<'_>)> {
            payload
                .iter()
                .map(|(field, kind, values)| {
                    let value = match kind {
                        0 => PayloadValue::Cleared,
                        1 => PayloadValue::One(values.first().map_or("", String::as_str)),
                        _ => PayloadValue::List(values),
                    };
                    (field.as_str(), value)
                })
                .collect()
        }

        /// What makes two payloads the same: the fields in name order (stable), each with
        /// its kind and only the values that kind carries.
        fn canonical(payload: &Owned) -> Vec<(String, u8, Vec<String>)> {
            let mut fields: Vec<_> = payload
                .iter()
                .map(|(field, kind, values)| {
                    let values = match kind {
                        0 => Vec::new(),
                        1 => vec![values.first().cloned().unwrap_or_default()],
                        _ => values.clone(),
                    };
                    (field.clone(), *kind, values)
                })
                .collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            fields
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Two different payloads never hash alike (and the same payload in another field
            /// order always does).
            #[test]
            fn different_payloads_never_hash_alike(a in payload(), b in payload()) {
                let same = canonical(&a) == canonical(&b);
                prop_assert_eq!(payload_hash(&view(&a)) == payload_hash(&view(&b)), same);
            }
        }
    }
}
