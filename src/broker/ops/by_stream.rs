//! What the queue and channel operations share: ListQueues' and ListChannels' pages of the
//! streams' resources by name, and the random ids in their ARNs and descriptions.

use std::sync::Arc;

use serde::Deserialize;

use super::bounded;
use crate::broker::protocol::{ApiError, ErrorKind, timestamp_ms};
use crate::broker::state::LiveStream;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamFilter {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: Option<f64>,
}

impl StreamFilter {
    fn admits(&self, stream: &LiveStream) -> bool {
        self.stream_arn == stream.arn
            && self
                .stream_creation_timestamp
                .is_none_or(|t| timestamp_ms(t) == Some(stream.record.created_ms))
    }
}

/// ListQueues' and ListChannels' input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListByStreamInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    stream_filter: Option<Vec<StreamFilter>>,
}

/// One page of a list: the resources with their streams, and the next page's token.
pub(super) struct Page<'a, T> {
    pub items: Vec<(&'a LiveStream, &'a T)>,
    pub next_token: Option<String>,
}

impl ListByStreamInput {
    /// The resources `of` every stream the filter admits (every stream without one), by
    /// `name`, after the token: at most MaxResults (100 by default), with the token of the next
    /// page when more follow.
    pub(super) fn page<'a, T>(
        &self,
        streams: &'a [Arc<LiveStream>],
        of: impl Fn(&'a LiveStream) -> &'a [T],
        name: impl Fn(&T) -> &str,
    ) -> Result<Page<'a, T>, ApiError> {
        let max = bounded(self.max_results, "maxResults", 1, 10_000)?.unwrap_or(100) as usize;
        let after = self.next_token.as_deref().unwrap_or_default();
        let filters = self.stream_filter.as_deref().unwrap_or_default();
        let mut items: Vec<(&LiveStream, &T)> = streams
            .iter()
            .map(Arc::as_ref)
            .filter(|s| filters.is_empty() || filters.iter().any(|f| f.admits(s)))
            .flat_map(|s| of(s).iter().map(move |item| (s, item)))
            .filter(|(_, item)| after.is_empty() || name(item) > after)
            .collect();
        items.sort_by(|a, b| name(a.1).cmp(name(b.1)));
        let next_token = (items.len() > max).then(|| name(items[max - 1].1).to_owned());
        items.truncate(max);
        Ok(Page { items, next_token })
    }
}

/// `bytes` random bytes in hex: the id of a new queue or channel.
pub(super) fn random_id(bytes: usize) -> Result<String, ApiError> {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random)
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}
