//! `serving.json`: which version of a versioned model answers, and the in-process canary.
//!
//! It sits beside the version folders (`anomaly-detector/serving.json`):
//!
//! ```json
//! {"default": "v1", "canary": {"version": "v2", "percent": 10}}
//! ```
//!
//! - `default`: the version answering requests that name none (without it: the highest loaded).
//! - `canary`: a second version that answers `percent` % (0–100) of those requests.
//!
//! The runtime reads it ([`ServingConfig::read`]) on start and whenever it changes; `ferroserve-train
//! promote | canary | rollback` rewrite it ([`ServingConfig::write`], atomically: a hidden temporary file
//! renamed over the old one, so the runtime never reads half a file). The edits themselves are
//! [`ServingConfig::promote`], [`ServingConfig::start_canary`] and [`ServingConfig::rollback`], so that
//! the command line and any other tool apply the same rules.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{self, VersionDir};

/// The file's name.
pub const SERVING_JSON: &str = "serving.json";

/// The contents of `serving.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// The version answering unpinned requests; the highest loaded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A version answering a share of unpinned requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// A canary: `version` answers `percent` % of the requests that pin no version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The canary version's name (`v2`) or number (`2`).
    pub version: String,
    /// Its share of unpinned requests, 0–100.
    pub percent: u8,
}

/// Whether two version names name the same version (`v2` and `2` do).
pub fn same_version(a: &str, b: &str) -> bool {
    a == b || matches!((layout::parse_version(a), layout::parse_version(b)), (Some(x), Some(y)) if x == y)
}

impl ServingConfig {
    /// Reads `dir/serving.json`; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::NotRegularFile`], [`Error::TooLarge`] ([`crate::files::read_side_file`]);
    /// [`Error::InvalidModel`] for malformed JSON, unknown keys, a percent over 100, an
    /// empty version name or a canary that is the default.
    pub fn read(dir: &Path) -> Result<Option<ServingConfig>> {
        let path = dir.join(SERVING_JSON);
        let bytes = match crate::files::read_side_file(&path) {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let config: ServingConfig = serde_json::from_slice(&bytes).map_err(|e| invalid(&path, e.to_string()))?;
        config.validate().map_err(|reason| invalid(&path, reason))?;
        Ok(Some(config))
    }

    /// Checks the rules [`ServingConfig::read`] enforces.
    ///
    /// # Errors
    /// The reason, in words.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let check_name = |what: &str, name: &str| {
            if name.trim().is_empty() || name.contains('/') || layout::is_hidden(name) {
                Err(format!("{what} `{name}` is not a version folder name"))
            } else {
                Ok(())
            }
        };
        if let Some(d) = &self.default {
            check_name("default", d)?;
        }
        if let Some(c) = &self.canary {
            check_name("canary version", &c.version)?;
            if c.percent > 100 {
                return Err(format!("canary percent {} is over 100", c.percent));
            }
            if self.default.as_deref().is_some_and(|d| same_version(d, &c.version)) {
                return Err(format!("the canary `{}` is also the default", c.version));
            }
        }
        Ok(())
    }

    /// Writes `dir/serving.json` atomically (a hidden temporary file, synced, renamed over the old
    /// one); an empty config removes the file.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when the config breaks [`ServingConfig::validate`]; [`Error::Io`].
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(SERVING_JSON);
        self.validate().map_err(|reason| invalid(&path, reason))?;
        if *self == ServingConfig::default() {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            return Ok(path);
        }
        let tmp = dir.join(format!(".{SERVING_JSON}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| invalid(&path, e.to_string()))?;
        text.push(b'\n');
        let mut file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&text).and_then(|()| file.sync_all()).map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// Makes `version` the default and ends any canary (the last step of a rollout).
    ///
    /// # Errors
    /// The reason, when `version` is not among `versions` (the folders on disk).
    pub fn promote(&mut self, versions: &[VersionDir], version: &str) -> std::result::Result<(), String> {
        let name = find(versions, version)?;
        self.default = Some(name);
        self.canary = None;
        Ok(())
    }

    /// Starts (or re-weights) a canary of `version` at `percent` %. Without a default, the default is
    /// pinned to the version that answers now (the highest below the canary), so that the canary does
    /// not take all traffic as the new highest version.
    ///
    /// # Errors
    /// The reason, when `version` is unknown, is the default, or has no older version to share traffic
    /// with, or `percent` is over 100.
    pub fn start_canary(
        &mut self,
        versions: &[VersionDir],
        version: &str,
        percent: u8,
    ) -> std::result::Result<(), String> {
        if percent > 100 {
            return Err(format!("percent {percent} is over 100"));
        }
        let name = find(versions, version)?;
        let default = match &self.default {
            Some(d) => d.clone(),
            None => {
                let number = layout::parse_version(&name).unwrap_or(u64::MAX);
                versions
                    .iter()
                    .rev()
                    .find(|v| v.number < number)
                    .map(|v| v.name.clone())
                    .ok_or_else(|| format!("`{name}` has no older version to share traffic with"))?
            }
        };
        if same_version(&default, &name) {
            return Err(format!("`{name}` is already the default"));
        }
        self.default = Some(default);
        self.canary = Some(Canary { version: name, percent });
        Ok(())
    }

    /// Rolls back: ends a running canary (the default keeps all traffic); without one, makes `to`, or
    /// the highest version below the current default, the default. Returns what it did, in words.
    ///
    /// # Errors
    /// The reason, when there is nothing to roll back to.
    pub fn rollback(&mut self, versions: &[VersionDir], to: Option<&str>) -> std::result::Result<String, String> {
        if to.is_none()
            && let Some(canary) = self.canary.take()
        {
            return Ok(format!("canary `{}` ended; all traffic to the default", canary.version));
        }
        let current = match &self.default {
            Some(d) => d.clone(),
            None => versions.last().map(|v| v.name.clone()).ok_or("the model has no version folder")?,
        };
        let target = match to {
            Some(v) => find(versions, v)?,
            None => {
                let number = layout::parse_version(&current).unwrap_or(u64::MAX);
                versions
                    .iter()
                    .rev()
                    .find(|v| v.number < number)
                    .map(|v| v.name.clone())
                    .ok_or_else(|| format!("no version older than `{current}` to roll back to"))?
            }
        };
        self.canary = None;
        self.default = Some(target.clone());
        Ok(format!("default `{current}` → `{target}`"))
    }
}

/// The word for the newest version folder, wherever a version is named (`canary --version latest`).
pub const LATEST: &str = "latest";

/// The folder name of `version` among `versions` (`2` finds `v2`; [`LATEST`] the newest folder).
fn find(versions: &[VersionDir], version: &str) -> std::result::Result<String, String> {
    if version == LATEST {
        return versions.last().map(|v| v.name.clone()).ok_or_else(|| "no version folder".to_owned());
    }
    versions.iter().find(|v| same_version(&v.name, version)).map(|v| v.name.clone()).ok_or_else(|| {
        let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
        format!(
            "no version folder `{version}`; versions: {}",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        )
    })
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::InvalidModel { path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(names: &[&str]) -> Vec<VersionDir> {
        names
            .iter()
            .map(|n| VersionDir {
                name: (*n).to_owned(),
                number: layout::parse_version(n).unwrap(),
                path: PathBuf::from(n),
            })
            .collect()
    }

    #[test]
    fn reads_the_documented_form_and_rejects_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ServingConfig::read(dir.path()).unwrap(), None);
        fs::write(dir.path().join(SERVING_JSON), r#"{"default": "v1", "canary": {"version": "v2", "percent": 10}}"#)
            .unwrap();
        let c = ServingConfig::read(dir.path()).unwrap().unwrap();
        assert_eq!(c.default.as_deref(), Some("v1"));
        assert_eq!(c.canary, Some(Canary { version: "v2".into(), percent: 10 }));
        for (bad, why) in [
            ("{", "EOF"),
            (r#"{"defualt": "v1"}"#, "unknown field"),
            (r#"{"canary": {"version": "v2", "percent": 101}}"#, "over 100"),
            (r#"{"canary": {"version": "v2", "percent": -1}}"#, "invalid value"),
            (r#"{"default": "2", "canary": {"version": "v2", "percent": 5}}"#, "also the default"),
            (r#"{"default": "../v1"}"#, "not a version folder name"),
        ] {
            fs::write(dir.path().join(SERVING_JSON), bad).unwrap();
            let err = ServingConfig::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(SERVING_JSON), "{bad}: {err}");
        }
    }

    #[test]
    fn writes_atomically_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let c =
            ServingConfig { default: Some("v1".into()), canary: Some(Canary { version: "v2".into(), percent: 50 }) };
        c.write(dir.path()).unwrap();
        assert_eq!(ServingConfig::read(dir.path()).unwrap(), Some(c));
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [SERVING_JSON], "no temporary file is left");
        ServingConfig::default().write(dir.path()).unwrap();
        assert_eq!(ServingConfig::read(dir.path()).unwrap(), None, "an empty config removes the file");
        let bad = ServingConfig { default: None, canary: Some(Canary { version: "v2".into(), percent: 200 }) };
        assert!(bad.write(dir.path()).is_err());
        assert!(!dir.path().join(SERVING_JSON).exists(), "an invalid config writes nothing");
    }

    #[test]
    fn canary_promote_rollback_follow_a_rollout() {
        let vs = versions(&["v1", "v2", "v3"]);
        let mut c = ServingConfig::default();
        c.start_canary(&vs, "3", 10).unwrap();
        assert_eq!(c.default.as_deref(), Some("v2"), "the answering version is pinned");
        assert_eq!(c.canary, Some(Canary { version: "v3".into(), percent: 10 }));
        c.start_canary(&vs, "v3", 50).unwrap();
        assert_eq!(c.canary.as_ref().unwrap().percent, 50);
        assert_eq!(c.rollback(&vs, None).unwrap(), "canary `v3` ended; all traffic to the default");
        assert_eq!((c.default.as_deref(), c.canary.as_ref()), (Some("v2"), None));
        c.start_canary(&vs, "v3", 10).unwrap();
        c.promote(&vs, "v3").unwrap();
        assert_eq!((c.default.as_deref(), c.canary.as_ref()), (Some("v3"), None));
        assert_eq!(c.rollback(&vs, None).unwrap(), "default `v3` → `v2`");
        assert_eq!(c.rollback(&vs, Some("v1")).unwrap(), "default `v2` → `v1`");
        assert!(c.rollback(&vs, None).unwrap_err().contains("no version older than `v1`"));
        assert!(c.promote(&vs, "v9").unwrap_err().contains("no version folder `v9`; versions: v1, v2, v3"));
        assert!(c.start_canary(&vs, "v1", 10).unwrap_err().contains("already the default"));
        assert!(ServingConfig::default().start_canary(&vs, "v1", 10).unwrap_err().contains("no older version"));
        assert!(ServingConfig::default().start_canary(&vs, "v2", 101).is_err());
    }

    #[test]
    fn latest_names_the_newest_folder() {
        let vs = versions(&["v1", "v2", "v10"]);
        let mut c = ServingConfig::default();
        c.start_canary(&vs, LATEST, 10).unwrap();
        assert_eq!((c.default.as_deref(), c.canary.as_ref().map(|c| c.version.as_str())), (Some("v2"), Some("v10")));
        c.promote(&vs, LATEST).unwrap();
        assert_eq!(c.default.as_deref(), Some("v10"));
        assert_eq!(ServingConfig::default().promote(&[], LATEST).unwrap_err(), "no version folder");
    }
}
