use super::*;
use crate::config::SigningConfig;

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    push_hex(&mut s, bytes);
    s
}

fn signer(secret: &str) -> Signer {
    let config: SigningConfig = serde_json::from_str(&format!(
        r#"{{"keys":[{{"id":"k1","secret":"{secret}"}},{{"id":"k0","secret":"{secret}-old"}}]}}"#
    ))
    .unwrap();
    Signer::new(Some(&config)).unwrap()
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn hmac_matches_rfc4231() {
    // Test case 1: a 20-byte key.
    let mac = Hmac::new(&[0x0b; 20]).mac([b"Hi There" as &[u8]]);
    assert_eq!(
        hex(&mac),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    // Test case 6: a key longer than the block is hashed first.
    let mac = Hmac::new(&[0xaa; 131]).mac([
        b"Test Using Larger Than Block-Size Key - " as &[u8],
        b"Hash Key First",
    ]);
    assert_eq!(
        hex(&mac),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn signs_the_canonical_string_with_the_first_key() {
    let s = signer(SECRET);
    assert_eq!(s.kid(), "k1");
    // Unsorted input, a label and the credential: the canonical string is
    // the sorted x-aispend lines only (value from Python's hmac module).
    let set = [
        ("authorization", "Bearer sk-provider"),
        ("x-aispend-team", "search"),
        ("x-aispend-org", "acme"),
        ("x-aispend-label-feature", "x"),
        ("x-aispend-key-id", "demo-search"),
        ("x-aispend-request-id", "00112233445566778899aabbccddeeff"),
    ];
    assert_eq!(
        s.sign(1_764_800_000, set.into_iter()),
        "t=1764800000,kid=k1,v1=71f62494be0ea03d08cb1610768237bc05d4db117d5dd1d35bea0ed1b9215974"
    );
}

#[test]
fn any_change_changes_the_signature() {
    let s = signer(SECRET);
    let base = [("x-aispend-team", "search"), ("x-aispend-key-id", "a")];
    let sig = s.sign(10, base.into_iter());
    assert_ne!(sig, s.sign(11, base.into_iter()));
    assert_ne!(
        sig,
        s.sign(
            10,
            [("x-aispend-team", "searcH"), ("x-aispend-key-id", "a")].into_iter()
        )
    );
    assert_ne!(sig, s.sign(10, base.into_iter().take(1)));
    assert_ne!(sig, signer(&SECRET.repeat(2)).sign(10, base.into_iter()));
    // Order of the input does not matter.
    assert_eq!(sig, s.sign(10, base.into_iter().rev()));
}

#[test]
fn no_config_no_signer_and_debug_hides_the_secret() {
    assert!(Signer::new(None).is_none());
    let shown = format!("{:?}", signer(SECRET));
    assert!(
        !shown.contains(SECRET) && !shown.contains("0123"),
        "{shown}"
    );
    let config: SigningConfig = serde_json::from_str(&format!(
        r#"{{"keys":[{{"id":"k1","secret":"{SECRET}"}}]}}"#
    ))
    .unwrap();
    assert!(!format!("{config:?}").contains(SECRET));
}
