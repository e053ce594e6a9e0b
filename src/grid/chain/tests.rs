use super::*;

#[test]
fn storage_answers_decode_or_name_what_is_wrong() {
    assert_eq!(decode_storage(&Value::Null), Ok(None));
    assert_eq!(
        decode_storage(&json!("0x2a000000")),
        Ok(Some(vec![42, 0, 0, 0]))
    );
    let e = decode_storage(&json!("2a000000")).unwrap_err();
    assert_eq!(e, StorageError::NoPrefix("2a000000".into()));
    assert_eq!(
        e.to_string(),
        r#"storage value "2a000000" lacks the 0x prefix"#
    );
    let e = decode_storage(&json!("0xzz")).unwrap_err();
    assert!(matches!(e, StorageError::NotHex { .. }), "{e:?}");
    assert!(e.to_string().contains("not hex"), "{e}");
    let e = decode_storage(&json!(7)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "storage value is neither null nor a hex string: 7"
    );
}

#[test]
fn urls_must_be_websockets() {
    assert!(matches!(
        ChainClient::new(vec![], ChainOptions::default()),
        Err(ChainError::NoUrl)
    ));
    let e =
        ChainClient::new(vec!["https://x.invalid".into()], ChainOptions::default()).unwrap_err();
    assert!(e.to_string().contains("ws or wss"), "{e}");
    assert!(ChainClient::new(
        vec![
            "wss://tfchain.grid.tf/".into(),
            "ws://127.0.0.1:9944".into()
        ],
        ChainOptions::default()
    )
    .is_ok());
}
