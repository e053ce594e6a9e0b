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

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn every_cause_follows_on_one_line() {
        let refused = Wrapped("connection refused", None);
        let connect = Wrapped("tcp connect", Some(Box::new(refused)));
        let outer = Wrapped("error sending request", Some(Box::new(connect)));
        assert_eq!(
            with_causes(&outer),
            "error sending request: tcp connect: connection refused"
        );
        assert_eq!(causes(&outer), ": tcp connect: connection refused");
        let alone = Wrapped("alone", None);
        assert_eq!(causes(&alone), "");
        assert_eq!(with_causes(&alone), "alone");
    }
}
