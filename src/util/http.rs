//! Reading HTTP answers from services we do not control, with a cap.
//!
//! The grid's GraphQL and the "what is my IP" service are reached over the
//! network; a broken or hostile one could answer with an endless body. Every
//! body is read chunk by chunk and refused once it passes its cap, so memory
//! stays bounded whatever the other side sends.

/// Largest GraphQL answer read: a page of every node of the grid with its
/// interfaces is a few MiB.
pub(crate) const GRAPHQL_MAX_BODY: usize = 32 * 1024 * 1024;

/// Largest "what is my IP" answer read: one address as text.
pub(crate) const LOOKUP_MAX_BODY: usize = 4 * 1024;

/// Why a body was not read whole ([`read_capped`]).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The announced Content-Length already passes the cap.
    #[error("answer of {length} bytes is over the limit of {max}")]
    Announced { length: u64, max: usize },
    /// The body grew past the cap while it was read.
    #[error("answer is over the limit of {max} bytes")]
    TooLong { max: usize },
    #[error("reading the answer: {0}")]
    Read(reqwest::Error),
}

/// Reads the whole body of `response`, failing once it passes `max` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if let Some(length) = response.content_length() {
        if length > max as u64 {
            return Err(BodyError::Announced { length, max });
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLong { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one HTTP answer of `body_len` bytes on loopback, with or
    /// without a Content-Length, and returns its URL.
    async fn serve(body_len: usize, with_length: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let head = if with_length {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&vec![b'x'; body_len]).await;
        });
        url
    }

    async fn fetch(url: &str, max: usize) -> Result<Vec<u8>, BodyError> {
        let response = reqwest::get(url).await.expect("a loopback answer");
        read_capped(response, max).await
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let body = fetch(&serve(1000, true).await, 1000).await.expect("read");
        assert_eq!(body.len(), 1000);
        let body = fetch(&serve(1000, false).await, 1000).await.expect("read");
        assert_eq!(body.len(), 1000);
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_with_or_without_a_length() {
        let err = fetch(&serve(5000, true).await, 1000)
            .await
            .expect_err("too long");
        assert!(
            matches!(
                err,
                BodyError::Announced {
                    length: 5000,
                    max: 1000
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "answer of 5000 bytes is over the limit of 1000"
        );
        let err = fetch(&serve(200_000, false).await, 1000)
            .await
            .expect_err("too long");
        assert!(matches!(err, BodyError::TooLong { max: 1000 }), "{err:?}");
        assert_eq!(err.to_string(), "answer is over the limit of 1000 bytes");
    }

    /// Cargo.toml pins `idna_adapter` to its ASCII-only stream (no Unicode
    /// tables in the binary): a non-ASCII host name is refused, its
    /// punycode spelling works. Fails if the pin is lost.
    #[test]
    fn host_names_are_ascii_or_punycode() {
        assert!(url::Url::parse("https://b\u{fc}cher.example/").is_err());
        let url = url::Url::parse("https://xn--bcher-kva.example/").expect("punycode");
        assert_eq!(url.host_str(), Some("xn--bcher-kva.example"));
        assert!(url::Url::parse("https://Graphql.Grid.TF/graphql").is_ok());
    }
}
