//! The write pipeline (validate, custodian change-view hooks, commit) and the observers
//! (observe-view hooks once per commit).

use super::{Result, Service, ServiceError};
use crate::hooks::HookKind;
use cairn_confdb::ViewId;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;

impl Service {
    /// One write: begin (validate through the view), custodian change-view hooks, commit.
    /// Only custodian plugs of views in the written schema, whose data the write changes,
    /// run their app's hook.
    pub(super) async fn write(
        &self,
        view: &ViewId,
        changes: Vec<(String, Option<serde_json::Value>)>,
    ) -> Result<u64> {
        let keys = quoted_keys(changes.iter().map(|(k, _)| k.as_str()));
        let mut tx = self.confdb.begin(view, changes).await?;
        for app in self.members() {
            let Some(command) = app.hooks.change_view.as_deref() else {
                continue;
            };
            for plug in app.plugs.iter().filter(|p| p.custodian) {
                let Ok(custodied) = plug.view.parse::<ViewId>() else {
                    continue;
                };
                if custodied.account != view.account || custodied.schema != view.schema {
                    continue;
                }
                // A plug naming a view the schema lacks (or one with nothing readable)
                // gives its custodian nothing to look at; that must not block other writers.
                let proposed = match tx.view_data(&custodied) {
                    Ok(data) => data,
                    Err(e) => {
                        tracing::warn!(app = %app.name, "custodian hook skipped: {e}");
                        continue;
                    }
                };
                let current = self.current_data(&custodied).await;
                if same_data(&proposed, &current) {
                    continue;
                }
                let outcome = self
                    .options
                    .hooks
                    .run(&app, HookKind::ChangeView, command, &plug.view, &proposed)
                    .await;
                match outcome {
                    Ok(Some(modified)) => tx.replace_view_data(&custodied, modified)?,
                    Ok(None) => {}
                    Err(source) => {
                        return Err(ServiceError::Rejected {
                            keys,
                            view: view.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(tx.commit().await?)
    }

    /// A view's whole data now, `null` when there is none.
    pub(super) async fn current_data(&self, view: &ViewId) -> serde_json::Value {
        self.confdb
            .get(view, &[], &BTreeMap::new())
            .await
            .unwrap_or(serde_json::Value::Null)
    }

    /// Runs observe-view hooks once per commit for every app plugging a changed view,
    /// until the service stops.
    pub async fn observe_commits(self: Arc<Self>) {
        let mut events = self.confdb.subscribe();
        let mut shutdown = self.stopping();
        loop {
            let event = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                event = events.recv() => event,
            };
            let event = match event {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("observers missed {n} commits");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let changed: Vec<String> = self
                .confdb
                .affected_views(&event)
                .iter()
                .map(ToString::to_string)
                .collect();
            for app in self.members() {
                let Some(command) = app.hooks.observe_view.clone() else {
                    continue;
                };
                for plug in app.plugs.iter().filter(|p| changed.contains(&p.view)) {
                    let Ok(view) = plug.view.parse::<ViewId>() else {
                        continue;
                    };
                    let data = self.current_data(&view).await;
                    let (service, app, command, view_name) = (
                        self.clone(),
                        app.clone(),
                        command.clone(),
                        plug.view.clone(),
                    );
                    tokio::spawn(async move {
                        let run = service.options.hooks.run(
                            &app,
                            HookKind::ObserveView,
                            &command,
                            &view_name,
                            &data,
                        );
                        if let Err(e) = run.await {
                            tracing::warn!("{e}");
                        }
                    });
                }
            }
        }
    }
}

fn quoted_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    keys.enumerate()
        .map(|(i, k)| format!("{}\"{k}\"", if i == 0 { " " } else { ", " }))
        .collect()
}

/// `null` and `{}` both mean "nothing there".
fn same_data(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let empty = |v: &serde_json::Value| v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
    a == b || (empty(a) && empty(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_data_compares_equal() {
        assert!(same_data(&json!(null), &json!({})));
        assert!(same_data(&json!({"a": 1}), &json!({"a": 1})));
        assert!(!same_data(&json!({"a": 1}), &json!(null)));
    }

    #[test]
    fn keys_are_quoted_like_library_errors() {
        assert_eq!(quoted_keys(["a", "b.c"].into_iter()), " \"a\", \"b.c\"");
        assert_eq!(quoted_keys(std::iter::empty()), "");
    }
}
