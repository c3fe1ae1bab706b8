//! `Foo/changes` for any type: `hasMoreChanges` paging, the changed objects fetched in the same
//! request by back-reference, pages merged into one net change set.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::client::{JmapClient, Request};
use super::error::JmapError;

/// An object with a JMAP id.
pub trait HasId {
    fn id(&self) -> &str;
}

/// The net changes between two states, with the current version of every created or updated
/// object. An object created and destroyed within the window appears nowhere; one destroyed and
/// created again (Cyrus derives email ids from content) counts as updated.
#[derive(Debug, Clone)]
pub struct Changes<T> {
    pub old_state: String,
    pub new_state: String,
    pub created: Vec<T>,
    pub updated: Vec<T>,
    pub destroyed: Vec<String>,
    /// How many `/changes` calls it took (more than one when `hasMoreChanges` paged).
    pub pages: u32,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawChanges {
    pub new_state: String,
    pub has_more_changes: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub created: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub updated: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub destroyed: Vec<String>,
}

/// A `/get` response.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawGet<T> {
    pub state: String,
    pub list: Vec<T>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub not_found: Vec<String>,
}

/// What an id amounts to over the pages merged so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetChange {
    Created,
    Updated,
    Destroyed,
}

/// Folds one page into the net change per id (RFC 8620 section 5.2: a client may merge).
pub fn merge_page(
    net: &mut BTreeMap<String, NetChange>,
    created: &[String],
    updated: &[String],
    destroyed: &[String],
) {
    use NetChange::*;
    for id in created {
        let next = match net.get(id) {
            None | Some(Created) => Created,
            // It existed before the window and exists again: changed, as far as we can tell.
            Some(Destroyed) | Some(Updated) => Updated,
        };
        net.insert(id.clone(), next);
    }
    for id in updated {
        let next = match net.get(id) {
            Some(Created) => Created,
            None | Some(Updated) | Some(Destroyed) => Updated,
        };
        net.insert(id.clone(), next);
    }
    for id in destroyed {
        match net.get(id) {
            // Born and gone within the window: the caller never needs to hear of it.
            Some(Created) => {
                net.remove(id);
            }
            None | Some(Updated) | Some(Destroyed) => {
                net.insert(id.clone(), Destroyed);
            }
        }
    }
}

impl JmapClient {
    /// `<type_>/changes` from `since` until `hasMoreChanges` is false, each page sent with two
    /// `<type_>/get` calls that fetch its created and updated objects by back-reference (one
    /// round trip per page). `maxChanges` is at most `maxObjectsInGet`, so those gets fit.
    /// `cannotCalculateChanges` is [`JmapError::CannotCalculateChanges`]: list everything.
    pub(super) async fn changes_with_objects<T: DeserializeOwned + HasId>(
        &self,
        type_: &str,
        since: &str,
        max_changes: Option<u64>,
        properties: &[&str],
        what: &str,
    ) -> Result<Changes<T>, JmapError> {
        let max_get = self.session().limits.max_objects_in_get;
        let max_changes = max_changes.unwrap_or(max_get).clamp(1, max_get);
        let changes_method = format!("{type_}/changes");
        let get_method = format!("{type_}/get");
        let mut state = since.to_string();
        let mut net = BTreeMap::new();
        let mut objects: BTreeMap<String, T> = BTreeMap::new();
        let mut pages = 0u32;
        loop {
            let mut request = Request::new();
            let changes = request.call(
                &changes_method,
                json!({"accountId": self.account_id(), "sinceState": state, "maxChanges": max_changes}),
            );
            let mut gets = Vec::new();
            for path in ["/created", "/updated"] {
                gets.push(request.call(
                    &get_method,
                    json!({
                        "accountId": self.account_id(),
                        "#ids": changes.result(path),
                        "properties": properties,
                    }),
                ));
            }
            let mut responses = self.send(&request, what).await?;
            // The changes first: when they failed, the gets failed only because of them.
            let args = responses
                .take(&changes)
                .map_err(|f| self.call_failure(f, &changes_method, what, Some(since)))?;
            let page: RawChanges = serde_json::from_value(args).map_err(|e| {
                self.protocol(
                    what,
                    format!("the {changes_method} response does not parse: {e}"),
                )
            })?;
            pages += 1;
            for get in &gets {
                let got: RawGet<T> = self.take(&mut responses, get, what)?;
                for object in got.list {
                    objects.insert(object.id().to_string(), object);
                }
            }
            merge_page(&mut net, &page.created, &page.updated, &page.destroyed);
            let progressed = page.new_state != state;
            state = page.new_state;
            if !page.has_more_changes {
                break;
            }
            if !progressed {
                return Err(self.protocol(
                    what,
                    format!("{changes_method} says hasMoreChanges but its state stays {state:?}"),
                ));
            }
        }
        let mut out = Changes {
            old_state: since.to_string(),
            new_state: state,
            created: Vec::new(),
            updated: Vec::new(),
            destroyed: Vec::new(),
            pages,
        };
        for (id, change) in net {
            match change {
                // An object gone between its page and the get is left out: the next
                // changes call reports it destroyed.
                NetChange::Created => out.created.extend(objects.remove(&id)),
                NetChange::Updated => out.updated.extend(objects.remove(&id)),
                NetChange::Destroyed => out.destroyed.push(id),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NetChange::*;

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// One row per case: the change in page 1, the change in page 2, the net result.
    #[test]
    fn pages_merge_into_net_changes() {
        let cases: [(&str, &str, Option<NetChange>); 10] = [
            ("created", "", Some(Created)),
            ("created", "updated", Some(Created)),
            ("created", "destroyed", None),
            ("updated", "updated", Some(Updated)),
            ("updated", "destroyed", Some(Destroyed)),
            ("destroyed", "created", Some(Updated)),
            ("destroyed", "updated", Some(Updated)),
            ("destroyed", "destroyed", Some(Destroyed)),
            ("", "created", Some(Created)),
            ("updated", "created", Some(Updated)),
        ];
        for (first, second, expected) in cases {
            let mut net = BTreeMap::new();
            for step in [first, second] {
                let list = ids(&["x"]);
                let none: Vec<String> = Vec::new();
                let pick = |k: &str| if step == k { &list } else { &none };
                merge_page(
                    &mut net,
                    pick("created"),
                    pick("updated"),
                    pick("destroyed"),
                );
            }
            assert_eq!(net.get("x").copied(), expected, "{first} then {second}");
        }
    }

    #[test]
    fn one_page_can_hold_all_three_lists() {
        let mut net = BTreeMap::new();
        merge_page(&mut net, &ids(&["a", "b"]), &ids(&["c"]), &ids(&["b", "d"]));
        assert_eq!(
            net.into_iter().collect::<Vec<_>>(),
            vec![
                ("a".to_string(), Created),
                ("c".to_string(), Updated),
                ("d".to_string(), Destroyed)
            ]
        );
    }

    #[test]
    fn null_lists_read_as_empty() {
        let p: RawChanges = serde_json::from_str(
            r#"{"oldState":"1","newState":"2","hasMoreChanges":false,"created":null,"updated":["u"],"destroyed":[],"updatedProperties":null}"#,
        )
        .unwrap();
        assert_eq!((p.created.len(), p.updated.len()), (0, 1));
    }
}
