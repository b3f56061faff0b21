//! Watch streams: the data of a view now, then once per commit that changed it.

use super::{Result, Service, ViewGrant};
use futures_util::Stream;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// One step of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The commit; `None` for the first update, which carries the data as it is now.
    pub revision: Option<u64>,
    /// The view's data (or the requested keys), `null` when there is none.
    pub data: serde_json::Value,
}

impl Service {
    /// The current data first, then one update per commit that changed what the caller
    /// watches; ends when the service stops.
    pub async fn watch(
        self: &Arc<Self>,
        grant: ViewGrant,
        keys: Vec<String>,
        with: BTreeMap<String, String>,
    ) -> Result<impl Stream<Item = Update> + Send + 'static> {
        // Subscribe before reading, so that no commit falls between the two.
        let events = self.confdb.subscribe();
        let first = self.read_or_null(&grant, &keys, &with).await?;
        let state = WatchState {
            first: Some(Update {
                revision: None,
                data: first.clone(),
            }),
            last: first,
            events,
            shutdown: self.stopping(),
            service: self.clone(),
            grant,
            keys,
            with,
        };
        Ok(futures_util::stream::unfold(state, next_update))
    }

    /// A get where "no data" is `null` rather than an error (other errors still count).
    async fn read_or_null(
        &self,
        grant: &ViewGrant,
        keys: &[String],
        with: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value> {
        match self.confdb.get(grant.view(), keys, with).await {
            Ok(data) => Ok(data),
            Err(cairn_confdb::Error::NoData { .. }) => Ok(serde_json::Value::Null),
            Err(e) => Err(e.into()),
        }
    }
}

struct WatchState {
    first: Option<Update>,
    last: serde_json::Value,
    events: broadcast::Receiver<cairn_confdb::CommitEvent>,
    shutdown: watch::Receiver<bool>,
    service: Arc<Service>,
    grant: ViewGrant,
    keys: Vec<String>,
    with: BTreeMap<String, String>,
}

async fn next_update(mut st: WatchState) -> Option<(Update, WatchState)> {
    if let Some(first) = st.first.take() {
        return Some((first, st));
    }
    loop {
        let event = tokio::select! {
            _ = st.shutdown.wait_for(|s| *s) => return None,
            event = st.events.recv() => event,
        };
        let revision = match event {
            Ok(event) => {
                let affected = st.service.confdb.affected_views(&event);
                if !affected.contains(st.grant.view()) {
                    continue;
                }
                Some(event.revision)
            }
            // Missed commits: compare with the current data instead.
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let data = st
            .service
            .read_or_null(&st.grant, &st.keys, &st.with)
            .await
            .unwrap_or(serde_json::Value::Null);
        if data == st.last {
            continue;
        }
        st.last = data.clone();
        return Some((Update { revision, data }, st));
    }
}
