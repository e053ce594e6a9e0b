use super::*;

#[test]
fn storage_answers_decode_or_name_what_is_wrong() {
    assert_eq!(decode_storage(&Value::Null), Ok(None));
    assert_eq!(
        decode_storage(&json!("0x2a000000")),
        Ok(Some(vec![42, 0, 0, 0]))
    );
    assert!(decode_storage(&json!("2a000000"))
        .unwrap_err()
        .contains("0x prefix"));
    assert!(decode_storage(&json!("0xzz"))
        .unwrap_err()
        .contains("not hex"));
    assert!(decode_storage(&json!(7)).unwrap_err().contains("neither"));
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
