//! An error with its causes on one line. Some libraries' own messages are
//! terse (reqwest says "error sending request"); the causes say what
//! happened (refused, timed out, a TLS failure).

use std::error::Error;

/// `: cause: cause ...`, every source of `e` in turn (empty when none).
pub(crate) fn causes(e: &dyn Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `e` followed by its [`causes`].
pub(crate) fn with_causes(e: &dyn Error) -> String {
    format!("{e}{}", causes(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_follows_on_one_line() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        // io::Error's Display of a wrapped error is the inner one's; its
        // source is the inner one again.
        assert_eq!(with_causes(&outer), "refused: refused");
        let plain = std::fmt::Error;
        assert_eq!(causes(&plain), "");
        assert_eq!(with_causes(&plain), plain.to_string());
    }
}
