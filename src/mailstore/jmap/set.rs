//! The shape of `/set` and `/import` answers, and per-object outcomes: every id asked about gets
//! an `Ok` or its [`SetError`], including ids the server forgot to mention.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::error::SetError;

fn null_as_empty_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(Option::<BTreeMap<String, V>>::deserialize(d)?.unwrap_or_default())
}

fn null_as_empty_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// A `/set` response (RFC 8620 section 5.3); `/import` answers with the `created` and
/// `notCreated` parts. Cyrus sends `null` for empty parts.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSet {
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub created: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub updated: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "null_as_empty_vec")]
    pub destroyed: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub not_created: BTreeMap<String, SetError>,
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub not_updated: BTreeMap<String, SetError>,
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub not_destroyed: BTreeMap<String, SetError>,
}

/// The outcome per object of an update or destroy, in the order asked.
pub type Outcomes = Vec<(String, Result<(), SetError>)>;

impl RawSet {
    /// Outcomes of updating `ids`.
    pub fn update_outcomes(&mut self, ids: impl IntoIterator<Item = String>) -> Outcomes {
        let done: BTreeSet<String> = self.updated.keys().cloned().collect();
        outcomes(ids, &done, &mut self.not_updated)
    }

    /// Outcomes of destroying `ids`.
    pub fn destroy_outcomes(&mut self, ids: impl IntoIterator<Item = String>) -> Outcomes {
        let done: BTreeSet<String> = self.destroyed.iter().cloned().collect();
        outcomes(ids, &done, &mut self.not_destroyed)
    }
}

fn outcomes(
    ids: impl IntoIterator<Item = String>,
    done: &BTreeSet<String>,
    failed: &mut BTreeMap<String, SetError>,
) -> Outcomes {
    ids.into_iter()
        .map(|id| {
            let outcome = if let Some(e) = failed.remove(&id) {
                Err(e)
            } else if done.contains(&id) {
                Ok(())
            } else {
                Err(SetError::unanswered())
            };
            (id, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstore::jmap::error::SetErrorType;

    #[test]
    fn every_id_gets_an_outcome() {
        let mut s: RawSet = serde_json::from_str(
            r#"{"updated":{"a":null},"notUpdated":{"b":{"type":"notFound"}},
                "destroyed":null,"notDestroyed":{"d":{"type":"forbidden"}},"created":null}"#,
        )
        .unwrap();
        let u = s.update_outcomes(["a", "b", "c"].map(String::from));
        assert!(u[0].1.is_ok());
        assert_eq!(u[1].1.as_ref().unwrap_err().kind, SetErrorType::NotFound);
        assert!(u[2].1.as_ref().unwrap_err().is_retryable());
        let d = s.destroy_outcomes(["d".to_string()]);
        assert_eq!(d[0].1.as_ref().unwrap_err().kind, SetErrorType::Forbidden);
    }
}
