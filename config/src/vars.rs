//! Variable substitution (`${basearch}`, `${releasever}`, treefile `variables`) and the
//! `<date:FORMAT>` tags of `automatic-version-prefix`.

use std::collections::BTreeMap;

/// Treefile variables: name to a boolean, number or string.
pub type Variables = BTreeMap<String, serde_json::Value>;

/// A variable's value as substituted into strings.
pub(crate) fn var_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces every `${name}` in `s`. Returns the first unknown name as the error.
pub(crate) fn substitute(s: &str, vars: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(&var_text(v)),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A UTC date and time, for `<date:...>` tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildDate {
    /// Year, e.g. 2026.
    pub year: i32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    /// 0..=23
    pub hour: u32,
    /// 0..=59
    pub minute: u32,
    /// 0..=60
    pub second: u32,
}

impl BuildDate {
    /// The UTC date of `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> BuildDate {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        BuildDate {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// Seconds after the Unix epoch (the inverse of [`BuildDate::from_unix`]).
    pub fn to_unix(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (what meta.json's timestamps hold), if `s` is that.
    pub fn parse_rfc3339(s: &str) -> Option<BuildDate> {
        let b = s.as_bytes();
        if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
        let d = BuildDate {
            year: i32::try_from(num(0..4)?).ok()?,
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
            minute: num(14..16)?,
            second: num(17..19)?,
        };
        let ok = (1..=12).contains(&d.month)
            && (1..=31).contains(&d.day)
            && d.hour < 24
            && d.minute < 60
            && d.second <= 60
            && b[13] == b':'
            && b[16] == b':';
        ok.then_some(d)
    }

    /// Now, or `SOURCE_DATE_EPOCH` when set (reproducible builds).
    pub fn now() -> BuildDate {
        let secs = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            });
        BuildDate::from_unix(secs)
    }

    fn day_of_year(&self) -> u32 {
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap = (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0;
        CUM[(self.month - 1) as usize] + self.day + u32::from(leap && self.month > 2)
    }

    /// Formats with the GLib/strftime subset `%Y %y %m %d %e %H %M %S %j %F %%`.
    pub fn format(&self, fmt: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('y') => out.push_str(&format!("{:02}", self.year.rem_euclid(100))),
                Some('m') => out.push_str(&format!("{:02}", self.month)),
                Some('d') => out.push_str(&format!("{:02}", self.day)),
                Some('e') => out.push_str(&format!("{:>2}", self.day)),
                Some('H') => out.push_str(&format!("{:02}", self.hour)),
                Some('M') => out.push_str(&format!("{:02}", self.minute)),
                Some('S') => out.push_str(&format!("{:02}", self.second)),
                Some('j') => out.push_str(&format!("{:03}", self.day_of_year())),
                Some('F') => {
                    out.push_str(&format!("{}-{:02}-{:02}", self.year, self.month, self.day))
                }
                Some('%') => out.push('%'),
                Some(other) => return Err(format!("unsupported date format `%{other}`")),
                None => return Err("date format ends with `%`".to_string()),
            }
        }
        Ok(out)
    }
}

/// Expands every `<date:FORMAT>` tag in `s` (as rpm-ostree does for
/// `automatic-version-prefix`).
pub fn expand_date_tags(s: &str, date: &BuildDate) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("<date:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 6..];
        let end = after
            .find('>')
            .ok_or_else(|| "unclosed `<date:` tag".to_string())?;
        out.push_str(&date.format(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn unix_seconds_and_rfc3339_round_trip() {
        for secs in [0i64, 951_782_400, 1_700_000_000, 4_102_444_800 + 3599] {
            let d = BuildDate::from_unix(secs);
            assert_eq!(d.to_unix(), secs);
            let text = d.format("%FT%H:%M:%SZ").unwrap();
            assert_eq!(BuildDate::parse_rfc3339(&text), Some(d), "{text}");
        }
        assert_eq!(BuildDate::parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(BuildDate::parse_rfc3339("2026-12-07 00:00:00Z"), None);
    }

    use super::*;

    #[test]
    fn substitutes_known_and_reports_unknown() {
        let vars: Variables = [
            ("basearch".to_string(), "x86_64".into()),
            ("prod".to_string(), false.into()),
        ]
        .into();
        assert_eq!(
            substitute("a/${basearch}/${prod}", &vars).unwrap(),
            "a/x86_64/false"
        );
        assert_eq!(substitute("${nope}", &vars).unwrap_err(), "nope");
    }

    #[test]
    fn dates() {
        let d = BuildDate::from_unix(1_709_251_200); // 2024-03-01T00:00:00Z
        assert_eq!((d.year, d.month, d.day), (2024, 3, 1));
        assert_eq!(d.day_of_year(), 61);
        assert_eq!(
            expand_date_tags("24.03.<date:%Y%m%d>.dev", &d).unwrap(),
            "24.03.20240301.dev"
        );
        assert!(expand_date_tags("<date:%Q>", &d).is_err());
        assert_eq!(
            BuildDate::from_unix(0).format("%F %H:%M:%S").unwrap(),
            "1970-01-01 00:00:00"
        );
    }
}
