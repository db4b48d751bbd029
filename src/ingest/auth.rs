//! Who may post audit events: whoever presents the configured bearer token, compared in constant
//! time. A caller without it learns nothing (401, body unread).
use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::Error;

/// Shortest token accepted (a token shorter than this is a configuration mistake).
pub const MIN_TOKEN_LEN: usize = 32;

/// The token as configured: trimmed (files usually end with a newline), long enough, printable.
pub fn checked_token(raw: &str) -> Result<String, Error> {
    let token = raw.trim();
    if token.len() < MIN_TOKEN_LEN {
        return Err(Error::WeakToken("shorter than 32 characters"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::WeakToken(
            "must be printable ASCII without spaces (it travels in an HTTP header)",
        ));
    }
    Ok(token.to_string())
}

/// Equality whose time depends only on the lengths, never on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Does the request carry `Authorization: Bearer <token>`? Exactly one such header.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(presented) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    constant_time_eq(presented, token.as_bytes())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let cases: [(&[&str], bool); 8] = [
            (&["Bearer 0123456789abcdef0123456789abcdef"], true),
            (&[], false),
            (&["Bearer 0123456789abcdef0123456789abcdeF"], false),
            (&["Bearer 0123456789abcdef0123456789abcde"], false),
            (&["Bearer 0123456789abcdef0123456789abcdef0"], false),
            (&["Basic 0123456789abcdef0123456789abcdef"], false),
            (&["0123456789abcdef0123456789abcdef"], false),
            (
                &["Bearer wrong", "Bearer 0123456789abcdef0123456789abcdef"],
                false,
            ),
        ];
        for (values, want) in cases {
            assert_eq!(authorized(&headers(values), TOKEN), want, "{values:?}");
        }
    }

    #[test]
    fn tokens_are_trimmed_and_must_be_strong() {
        assert_eq!(checked_token(&format!("{TOKEN}\n")).unwrap(), TOKEN);
        assert!(matches!(checked_token("short"), Err(Error::WeakToken(_))));
        assert!(matches!(
            checked_token("0123456789abcdef 0123456789abcdef"),
            Err(Error::WeakToken(_))
        ));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
