//! The queue calls the Queue controller makes on a stream's brokers, with the admin key.

use serde_json::{Value, json};

use super::{AdminError, BrokerAdmin};

/// What the operator sets of a queue (QueueAttributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueAttributes {
    /// The visibility timeout, in seconds.
    pub visibility_timeout_seconds: i64,
    /// Receives before a dead letter; `None` turns dead letters off.
    pub max_receive_count: Option<i64>,
}

impl QueueAttributes {
    fn to_json(&self) -> Value {
        let dead_letters = match self.max_receive_count {
            Some(max) => json!({"TargetType": "BUILT_IN", "MaxReceiveCount": max}),
            None => json!({"TargetType": "NONE"}),
        };
        json!({
            "VisibilityTimeoutSeconds": self.visibility_timeout_seconds,
            "DeadLetterConfiguration": dead_letters,
        })
    }
}

/// What the operator reads of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSummary {
    /// The queue's ARN.
    pub arn: String,
    /// CREATING, ACTIVE or DELETING.
    pub status: String,
    /// Its attributes.
    pub attributes: QueueAttributes,
}

/// Where a new queue starts: LATEST, TRIM_HORIZON, or AT_TIMESTAMP with seconds since 1970.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueStart<'a> {
    /// The position's type.
    pub kind: &'a str,
    /// With AT_TIMESTAMP: the time.
    pub timestamp_seconds: Option<f64>,
}

fn summary(operation: &'static str, value: &Value) -> Result<QueueSummary, AdminError> {
    let missing = |field: &str| AdminError::Decode {
        operation,
        message: format!("no {field}"),
    };
    let text = |field: &'static str| {
        value[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| missing(field))
    };
    let attributes = &value["QueueAttributes"];
    let dead_letters = &attributes["DeadLetterConfiguration"];
    Ok(QueueSummary {
        arn: text("QueueARN")?,
        status: text("QueueStatus")?,
        attributes: QueueAttributes {
            visibility_timeout_seconds: attributes["VisibilityTimeoutSeconds"]
                .as_i64()
                .ok_or_else(|| missing("VisibilityTimeoutSeconds"))?,
            max_receive_count: match dead_letters["TargetType"].as_str() {
                Some("NONE") => None,
                _ => dead_letters["MaxReceiveCount"].as_i64(),
            },
        },
    })
}

impl BrokerAdmin {
    /// The queue named `name` on the stream, or `None` when the stream has none by that name.
    pub async fn find_queue(
        &self,
        stream_arn: &str,
        name: &str,
    ) -> Result<Option<QueueSummary>, AdminError> {
        let mut next_token: Option<String> = None;
        loop {
            let mut request = json!({"StreamFilter": [{"StreamARN": stream_arn}]});
            if let Some(token) = &next_token {
                request["NextToken"] = json!(token);
            }
            let answer = self.call("ListQueues", request).await?;
            let found = answer["QueueSummaries"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|q| q["QueueName"] == name)
                .and_then(|q| q["QueueARN"].as_str().map(str::to_owned));
            if let Some(arn) = found {
                return match self.describe_queue(&arn).await {
                    Err(error) if error.is_not_found() => Ok(None),
                    other => other.map(Some),
                };
            }
            match answer["NextToken"].as_str() {
                Some(token) => next_token = Some(token.to_owned()),
                None => return Ok(None),
            }
        }
    }

    /// The queue with `arn`.
    pub async fn describe_queue(&self, arn: &str) -> Result<QueueSummary, AdminError> {
        let operation = "DescribeQueue";
        let answer = self.call(operation, json!({"QueueARN": arn})).await?;
        summary(operation, &answer["QueueDescription"])
    }

    /// Creates a queue on the stream.
    pub async fn create_queue(
        &self,
        stream_arn: &str,
        name: &str,
        start: QueueStart<'_>,
        attributes: &QueueAttributes,
    ) -> Result<QueueSummary, AdminError> {
        let operation = "CreateQueue";
        let mut position = json!({"Type": start.kind});
        if let Some(seconds) = start.timestamp_seconds {
            position["Timestamp"] = json!(seconds);
        }
        let answer = self
            .call(
                operation,
                json!({
                    "QueueName": name,
                    "StreamConfigurationList": [{"StreamARN": stream_arn, "StartingPosition": position}],
                    "QueueAttributes": attributes.to_json(),
                }),
            )
            .await?;
        summary(operation, &answer["QueueDescription"])
    }

    /// Sets a queue's attributes.
    pub async fn update_queue(
        &self,
        arn: &str,
        attributes: &QueueAttributes,
    ) -> Result<QueueSummary, AdminError> {
        let operation = "UpdateQueue";
        let answer = self
            .call(
                operation,
                json!({"QueueARN": arn, "QueueAttributes": attributes.to_json()}),
            )
            .await?;
        summary(operation, &answer["QueueDescription"])
    }

    /// Deletes a queue.
    pub async fn delete_queue(&self, arn: &str) -> Result<(), AdminError> {
        self.call("DeleteQueue", json!({"QueueARN": arn}))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_description_reads_back_as_the_attributes_it_was_given() {
        let given = QueueAttributes {
            visibility_timeout_seconds: 45,
            max_receive_count: Some(3),
        };
        let description = json!({"QueueARN": "arn:q", "QueueStatus": "ACTIVE",
                                 "QueueAttributes": given.to_json()});
        let read = summary("DescribeQueue", &description).expect("a summary");
        assert_eq!(read.attributes, given);
        let off = QueueAttributes {
            visibility_timeout_seconds: 0,
            max_receive_count: None,
        };
        let description = json!({"QueueARN": "arn:q", "QueueStatus": "CREATING",
                                 "QueueAttributes": off.to_json()});
        assert_eq!(
            summary("DescribeQueue", &description)
                .expect("a summary")
                .attributes,
            off
        );
        assert!(summary("DescribeQueue", &json!({"QueueARN": "arn:q"})).is_err());
    }
}
