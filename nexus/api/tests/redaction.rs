//! Types that carry secret values never show them in `Debug` output (which is what ends up
//! in logs and panic messages).

use nexus_api::model::{
    DecryptResponse, EncryptRequest, GetSecretResponse, PatchSecretRequest, PutSecretRequest,
    Values,
};
use zeroize::Zeroizing;

const SECRET: &str = "correct-horse-battery-staple";

#[test]
fn secret_values_are_redacted_in_debug() {
    let values: Values = [("password".to_owned(), SECRET.to_owned())].into();
    let shown = [
        format!("{values:?}"),
        format!(
            "{:?}",
            PutSecretRequest {
                path: "db/pw".into(),
                values: values.clone(),
                cas: None,
            }
        ),
        format!(
            "{:?}",
            PatchSecretRequest {
                path: "db/pw".into(),
                values: values.clone(),
                cas: None,
            }
        ),
        format!(
            "{:?}",
            GetSecretResponse {
                data: values.clone(),
                version: 1
            }
        ),
        format!(
            "{:?}",
            EncryptRequest {
                plaintext: Zeroizing::new(SECRET.as_bytes().to_vec()),
                algorithm: None,
            }
        ),
        format!(
            "{:?}",
            DecryptResponse {
                plaintext: Zeroizing::new(SECRET.as_bytes().to_vec()),
            }
        ),
    ];
    for text in shown {
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("REDACTED"), "{text}");
    }
}

#[test]
fn values_serialize_as_the_plain_map_spike_sends() {
    let values: Values = [("password".to_owned(), "pw".to_owned())].into();
    assert_eq!(
        serde_json::to_string(&values).expect("json"),
        r#"{"password":"pw"}"#
    );
    let back: Values = serde_json::from_str(r#"{"user":"u","password":"pw"}"#).expect("parse");
    assert_eq!(back.len(), 2);
    assert_eq!(back.get("user").map(String::as_str), Some("u"));
}
