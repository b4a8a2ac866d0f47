//! The closest known word to a misspelled one, for configuration errors ("did you mean
//! JWT_AUDIENCE?"), and whether a value is close enough to a known word to be repeated in one.
//!
//! Words are compared ignoring ASCII case, by optimal string alignment distance (Levenshtein
//! plus the swap of two neighbours, the commonest typo). How far a word may be from the one it
//! meant grows with its length: one edit for the shortest, three from eight characters.

/// The known word closest to `word`, when one is close enough to be what was meant. On a tie,
/// the first in `known`.
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = limit(word);
    let mut best: Option<(usize, &str)> = None;
    for candidate in known {
        let d = distance(word, candidate);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, w)| w)
}

/// Whether `value` is, up to a typo, one of `known`: then repeating it in an error tells
/// nothing that is not already public (it is one of the gateway's own words, mistyped). Only
/// short words of letters, digits, `_`, `-`, `.`, `+` and `/` qualify.
pub fn is_near_miss<'a>(value: &str, known: impl IntoIterator<Item = &'a str>) -> bool {
    value.len() <= 32
        && !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.+/".contains(&b))
        && closest(value, known).is_some()
}

fn limit(word: &str) -> usize {
    match word.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    }
}

/// Optimal string alignment distance over ASCII-lowercased characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Rows i-2, i-1 and i of the usual table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_edits_and_swaps_ignoring_case() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("JWT", "jwt"), 0);
        assert_eq!(distance("method", "methods"), 1);
        assert_eq!(distance("INTROSPECTION_ULR", "INTROSPECTION_URL"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ca", "abc"), 3);
    }

    #[test]
    fn the_closest_word_within_reach() {
        let settings = ["JWT_AUDIENCE", "JWT_ISSUER", "TOKEN_SCOPE", "TOKEN_URL"];
        assert_eq!(closest("JWT_AUDIENCES", settings), Some("JWT_AUDIENCE"));
        assert_eq!(closest("jwt_audience", settings), Some("JWT_AUDIENCE"));
        assert_eq!(closest("TOKEN_SCOPES", settings), Some("TOKEN_SCOPE"));
        assert_eq!(closest("TOKEN_ULR", settings), Some("TOKEN_URL"));
        assert_eq!(closest("DPOP_ALGORITHMS", settings), None);
        assert_eq!(closest("GATEWAY_ISSUER", settings), None);
        assert_eq!(closest("aud", ["audiences"]), None);
        assert_eq!(
            closest("method", ["prefix", "methods", "origin"]),
            Some("methods")
        );
    }

    #[test]
    fn only_near_misses_of_short_words_may_be_repeated() {
        let modes = ["jwt", "public", "optional", "report", "opaque"];
        assert!(is_near_miss("JWT", modes));
        assert!(is_near_miss("pubilc", modes));
        assert!(!is_near_miss("Zp9-planted", modes));
        assert!(!is_near_miss("", modes));
        assert!(!is_near_miss("jwt ", modes));
        assert!(!is_near_miss("jw\"t", modes));
    }
}
