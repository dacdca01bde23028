//! IAM's wildcards (`*` any run of characters, `?` exactly one), the one implementation every
//! judgement uses: matching a text ([`matches`], the lockout check's `Action` and `ArnLike`),
//! and comparing two patterns ([`covers`], [`intersects`], the access explanation's).
//! Case folding is the caller's choice (`fold`): actions are case-insensitive, ARNs are not.

/// Whether the pattern is only `*`s (matches everything).
pub(crate) fn is_universal(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b == b'*')
}

/// IAM wildcard match: `*` is any run of characters, `?` exactly one.
pub(crate) fn matches(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |c: char| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // The last `*` absorbs one more character; match again after it.
            let st = st + 1;
            star = Some((sp, st));
            (pi, ti) = (sp + 1, st);
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn chars(s: &str, fold: bool) -> Vec<char> {
    if fold {
        s.chars().map(|c| c.to_ascii_lowercase()).collect()
    } else {
        s.chars().collect()
    }
}

/// Whether every text `covered` matches is matched by `covering` (sound: `false` when not
/// sure). `kms:*` covers `kms:Decrypt` and `kms:Get*`; `*` covers everything.
pub(crate) fn covers(covering: &str, covered: &str, fold: bool) -> bool {
    if covering == covered || is_universal(covering) {
        return true;
    }
    if !covering.contains(['*', '?']) {
        // A literal covers only the same literal.
        return if fold {
            covering.eq_ignore_ascii_case(covered)
        } else {
            covering == covered
        };
    }
    // The usual pattern, a literal prefix and one trailing `*` (`kms:Get*`), covers what
    // starts with that prefix, wildcards after it included: no table needed.
    if let Some(prefix) = covering.strip_suffix('*')
        && !prefix.contains(['*', '?'])
    {
        let head = covered.as_bytes().get(..prefix.len());
        return head.is_some_and(|h| {
            if fold {
                h.eq_ignore_ascii_case(prefix.as_bytes())
            } else {
                h == prefix.as_bytes()
            }
        });
    }
    let (p, q) = (chars(covering, fold), chars(covered, fold));
    let (lp, lq) = (p.len(), q.len());
    let w = lq + 1;
    // ok[i * w + j]: p[i..] covers q[j..].
    let mut ok = vec![false; (lp + 1) * w];
    ok[lp * w + lq] = true;
    for i in (0..lp).rev() {
        for j in (0..=lq).rev() {
            ok[i * w + j] = if p[i] == '*' {
                ok[(i + 1) * w + j] || (j < lq && ok[i * w + j + 1])
            } else if j == lq || q[j] == '*' {
                false
            } else if p[i] == '?' || p[i] == q[j] {
                ok[(i + 1) * w + j + 1]
            } else {
                false
            };
        }
    }
    ok[0]
}

/// Whether some text matches both patterns.
pub(crate) fn intersects(a: &str, b: &str, fold: bool) -> bool {
    let wild = ['*', '?'];
    if !a.contains(wild) && !b.contains(wild) {
        return if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        };
    }
    let (p, q) = (chars(a, fold), chars(b, fold));
    let (lp, lq) = (p.len(), q.len());
    let w = lq + 1;
    let mut ok = vec![false; (lp + 1) * w];
    for i in (0..=lp).rev() {
        for j in (0..=lq).rev() {
            ok[i * w + j] = if i == lp && j == lq {
                true
            } else if i < lp && p[i] == '*' {
                ok[(i + 1) * w + j] || (j < lq && ok[i * w + j + 1])
            } else if j < lq && q[j] == '*' {
                ok[i * w + j + 1] || (i < lp && ok[(i + 1) * w + j])
            } else if i < lp && j < lq {
                (p[i] == '?' || q[j] == '?' || p[i] == q[j]) && ok[(i + 1) * w + j + 1]
            } else {
                false
            };
        }
    }
    ok[0]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{covers, intersects, matches};

    /// IAM's wildcard match of a text, by the definition: `*` any run, `?` one character.
    fn by_definition(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.split_first(), text.split_first()) {
            (None, _) => text.is_empty(),
            (Some((b'*', rest)), _) => {
                by_definition(rest, text)
                    || (!text.is_empty() && by_definition(pattern, &text[1..]))
            }
            (Some((p, rest)), Some((t, more))) => {
                (*p == b'?' || p == t) && by_definition(rest, more)
            }
            (Some(_), None) => false,
        }
    }

    /// Every text over `ab` up to `len` characters.
    fn texts(len: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|t: &Vec<u8>| {
                    [b'a', b'b'].map(|c| {
                        let mut t = t.clone();
                        t.push(c);
                        t
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    proptest! {
        #[test]
        fn matching_is_the_definition(p in "[ab*?]{0,5}", t in "[ab]{0,6}") {
            prop_assert_eq!(matches(&p, &t, false), by_definition(p.as_bytes(), t.as_bytes()), "{} matches {}", p, t);
            let upper = t.to_ascii_uppercase();
            prop_assert_eq!(matches(&p, &upper, true), by_definition(p.as_bytes(), t.as_bytes()), "{} matches {} ignoring case", p, upper);
        }

        #[test]
        fn coverage_never_claims_what_the_definition_denies(p in "[ab*?]{0,4}", q in "[ab*?]{0,4}") {
            let all = texts(p.len() + q.len() + 1);
            let expected = all
                .iter()
                .all(|t| !by_definition(q.as_bytes(), t) || by_definition(p.as_bytes(), t));
            // Sound, not complete: `?*` covers `*?`, unseen.
            prop_assert!(!covers(&p, &q, false) || expected, "{} covers {}", p, q);
        }

        #[test]
        fn coverage_of_a_literal_is_a_match(p in "[ab*?]{0,5}", q in "[ab]{0,5}") {
            prop_assert_eq!(covers(&p, &q, false), by_definition(p.as_bytes(), q.as_bytes()), "{} covers {}", p, q);
            let upper = q.to_ascii_uppercase();
            prop_assert_eq!(covers(&p, &upper, true), by_definition(p.as_bytes(), q.as_bytes()), "{} covers {} ignoring case", p, upper);
        }

        #[test]
        fn intersection_is_what_the_definition_says(a in "[ab*?]{0,4}", b in "[ab*?]{0,4}") {
            let all = texts(a.len() + b.len());
            let expected = all
                .iter()
                .any(|t| by_definition(a.as_bytes(), t) && by_definition(b.as_bytes(), t));
            prop_assert_eq!(intersects(&a, &b, false), expected, "{} and {}", a, b);
        }
    }

    #[test]
    fn pattern_coverage_follows_iam_wildcards() {
        assert!(covers("kms:*", "kms:decrypt", true));
        assert!(covers("kms:get*", "kms:getkey*", true));
        assert!(covers("*", "kms:get*", true));
        assert!(covers(
            "kms:GenerateDataKey*",
            "kms:generatedatakeypair",
            true
        ));
        assert!(!covers("kms:getkey*", "kms:get*", true));
        assert!(!covers("kms:decrypt", "kms:*", true));
        assert!(covers("kms:?ecrypt", "kms:decrypt", true));
        assert!(!covers("kms:?ecrypt", "kms:*crypt", true));
        assert!(!covers("Abc", "abc", false));
    }

    #[test]
    fn pattern_intersection_finds_a_common_match() {
        assert!(intersects("kms:*", "kms:decrypt", true));
        assert!(intersects("kms:get*", "*policy", true));
        assert!(!intersects("kms:decrypt", "kms:encrypt", true));
        assert!(!intersects("kms:get*", "kms:put*", true));
        assert!(intersects("kms:?ecrypt", "kms:d*", true));
    }
}
