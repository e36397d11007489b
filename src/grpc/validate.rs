//! Input checks for user fields; the error text goes to the caller as the
//! INVALID_ARGUMENT message.

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest email, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

pub fn name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(())
}

/// A pragmatic check: one `@`, a non-empty local part, a dotted domain of
/// non-empty labels, no spaces. Deliverability is not this service's job.
pub fn email(email: &str) -> Result<(), String> {
    if email.is_empty() {
        return Err("email must not be empty".into());
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(format!("email must be at most {MAX_EMAIL_BYTES} bytes"));
    }
    let malformed = || Err(format!("malformed email {email:?}"));
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return malformed();
    }
    let Some((local, domain)) = email.split_once('@') else {
        return malformed();
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
    {
        return malformed();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("Alice").is_ok());
        assert!(name("  ").is_err());
        assert!(name(&"n".repeat(101)).is_err());
        assert!(name("a\u{7}b").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("alice@example.com").is_ok());
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a@b@c.d",
            "a b@c.d",
            "a@c..d",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
