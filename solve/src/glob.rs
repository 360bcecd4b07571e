//! dnf-style package globs (`*`, `?`, `[...]`) for `exclude`, `includepkgs` and
//! `exclude-packages`, matched like dnf's name/NEVRA forms.

/// Does `pattern` (fnmatch: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`) match all of `text`?
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t)
}

fn matches(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(&p[pi..], t[ti])
                        && ok
                    {
                        pi += next;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `p`: (does it match `c`, its length).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
        first = false;
    }
    None
}

/// Does any of `patterns` match the package, by name, `name.arch`, `name-version-release`
/// or `name-version-release.arch` (the forms dnf's excludes accept)?
pub fn matches_package(patterns: &[String], name: &str, evr: &str, arch: &str) -> bool {
    let vr = evr.split_once(':').map_or(evr, |(_, vr)| vr);
    let forms = [
        name.to_string(),
        format!("{name}.{arch}"),
        format!("{name}-{vr}"),
        format!("{name}-{vr}.{arch}"),
        format!("{name}-{evr}.{arch}"),
    ];
    patterns.iter().any(|p| forms.iter().any(|f| fnmatch(p, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(fnmatch("fixture-*", "fixture-app"));
        assert!(!fnmatch("fixture-*", "xfixture-app"));
        assert!(fnmatch("kernel?", "kernel1"));
        assert!(fnmatch("fixture-virt-[ab]", "fixture-virt-b"));
        assert!(!fnmatch("fixture-virt-[!ab]", "fixture-virt-b"));
        assert!(fnmatch("lib[a-c]*", "libbar"));
        assert!(fnmatch("*", ""));
        assert!(!fnmatch("a", "ab"));
    }

    #[test]
    fn package_forms() {
        let p = |s: &str| vec![s.to_string()];
        assert!(matches_package(
            &p("fixture-lib"),
            "fixture-lib",
            "1.1-1",
            "x86_64"
        ));
        assert!(matches_package(
            &p("fixture-lib-1.1*"),
            "fixture-lib",
            "1.1-1",
            "x86_64"
        ));
        assert!(!matches_package(
            &p("fixture-lib-1.3*"),
            "fixture-lib",
            "1.1-1",
            "x86_64"
        ));
        assert!(matches_package(&p("*.noarch"), "setup", "2.14-1", "noarch"));
    }
}
