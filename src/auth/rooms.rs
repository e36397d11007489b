//! The `rooms` claim: patterns where `*` matches any run of characters,
//! deciding which rooms a token may join and post to.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRule(Vec<String>);

impl RoomRule {
    pub fn new(patterns: Vec<String>) -> Self {
        Self(patterns)
    }

    pub fn allows(&self, room: &str) -> bool {
        self.0
            .iter()
            .any(|pattern| matches(pattern.as_bytes(), room.as_bytes()))
    }
}

/// Glob match with `*` only, iteratively (no backtracking blow-up): the
/// last star's position is remembered and retried one character further.
fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run() {
        let rule = RoomRule::new(vec!["team-*".into(), "general".into(), "*-ops".into()]);
        for room in ["team-a", "team-", "general", "db-ops", "-ops"] {
            assert!(rule.allows(room), "{room}");
        }
        for room in ["team", "generals", "ops", "a-team-b", "db-ops-x"] {
            assert!(!rule.allows(room), "{room}");
        }
        assert!(RoomRule::new(vec!["*".into()]).allows("anything"));
        assert!(RoomRule::new(vec!["a*b*c".into()]).allows("aXbYc"));
        assert!(!RoomRule::new(vec!["a*b*c".into()]).allows("aXbY"));
        assert!(
            !RoomRule::new(vec![]).allows("x"),
            "an empty list allows nothing"
        );
        let long = "a".repeat(120);
        assert!(!RoomRule::new(vec!["*a*a*a*a*a*b".into()]).allows(&long));
    }
}
