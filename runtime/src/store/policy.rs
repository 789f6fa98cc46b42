//! The version policy (`--version_policy`): which version folders of a model are loaded.

use std::fmt;
use std::str::FromStr;

use ferroserve_formats::serving::same_version;

/// Which versions of a versioned model are loaded. Versions that `serving.json` names (the default
/// and the canary) are loaded whatever the policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `n` highest versions that load (`latest` is `latest:1`). A version that fails to load does
    /// not count, so a broken new version leaves the one before it serving.
    Latest(usize),
    /// Every version folder.
    All,
    /// These versions (by name, `v1`, or number, `1`).
    Specific(Vec<String>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Whether `name` is one of the versions a `specific:` policy lists (always true for others).
    pub fn lists(&self, name: &str) -> bool {
        match self {
            VersionPolicy::Specific(names) => names.iter().any(|n| same_version(n, name)),
            VersionPolicy::Latest(_) | VersionPolicy::All => true,
        }
    }
}

impl FromStr for VersionPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let usage = "expected `latest`, `latest:N`, `all` or `specific:v1,v3`";
        if s == "all" {
            return Ok(VersionPolicy::All);
        }
        if s == "latest" {
            return Ok(VersionPolicy::Latest(1));
        }
        if let Some(n) = s.strip_prefix("latest:") {
            return match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(VersionPolicy::Latest(n)),
                _ => Err(format!("`{s}`: N must be a whole number of at least 1")),
            };
        }
        if let Some(list) = s.strip_prefix("specific:") {
            let names: Vec<String> =
                list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
            if names.is_empty() {
                return Err(format!("`{s}`: list at least one version"));
            }
            return Ok(VersionPolicy::Specific(names));
        }
        Err(format!("`{s}`: {usage}"))
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPolicy::Latest(1) => f.write_str("latest"),
            VersionPolicy::Latest(n) => write!(f, "latest:{n}"),
            VersionPolicy::All => f.write_str("all"),
            VersionPolicy::Specific(names) => write!(f, "specific:{}", names.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("latest".parse(), Ok(VersionPolicy::Latest(1)));
        assert_eq!("latest:3".parse(), Ok(VersionPolicy::Latest(3)));
        assert_eq!("all".parse(), Ok(VersionPolicy::All));
        assert_eq!("specific:v1, 3".parse(), Ok(VersionPolicy::Specific(vec!["v1".into(), "3".into()])));
        for bad in ["latest:0", "latest:x", "specific:", "newest", ""] {
            assert!(bad.parse::<VersionPolicy>().is_err(), "{bad}");
        }
        for p in ["latest", "latest:2", "all", "specific:v1,v3"] {
            assert_eq!(p.parse::<VersionPolicy>().unwrap().to_string(), p);
        }
        let p: VersionPolicy = "specific:v1,3".parse().unwrap();
        assert!(p.lists("1") && p.lists("v3") && !p.lists("v2"));
    }
}
