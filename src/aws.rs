//! The AWS SDK configuration shared by the `sqs`/`sns` destinations and the `sqs` source: the
//! standard credential chain and region, optional per-block region, endpoint and role.
//!
//! SDK retries are off: hookfan retries durably itself (a destination's backoff, a source's
//! receive loop), and SDK retries would only hide failures from its metrics.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};

/// Where and as whom to reach AWS for one block of routes.yaml.
pub struct Endpoint<'a> {
    pub region: Option<&'a str>,
    pub endpoint_url: Option<&'a str>,
    pub role_arn: Option<&'a str>,
    /// How long one attempt of one operation may take.
    pub attempt_timeout: Duration,
}

/// Loads the SDK configuration for `endpoint`.
pub async fn sdk_config(endpoint: Endpoint<'_>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(endpoint.attempt_timeout)
                .build(),
        );
    if let Some(region) = endpoint.region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(url) = endpoint.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    let Some(role) = endpoint.role_arn else {
        return config;
    };
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("hookfan")
        .configure(&config)
        .build()
        .await;
    config
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}
