//! The operator process: Kubernetes client, telemetry endpoints, leader election, the
//! controllers, and a graceful stop on SIGTERM or a lost lease.

use std::convert::Infallible;
use std::sync::Arc;

use futures::FutureExt;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use kube::Client;
use tokio::sync::watch;

use super::install::LEASE_NAME;
use super::leader::Elector;
use super::{Context, OperatorError, OperatorOptions, run_controllers, serves_service_monitors};
use crate::broker::server::{ResponseBody, respond, serve};
use crate::broker::wait_for_signal;

const TEXT: &str = "text/plain; charset=utf-8";

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (this replica leads and its
/// controllers run, or it stands by as a healthy follower).
async fn telemetry(
    ctx: Arc<Context>,
    ready: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut text = String::new();
            let families = ctx.metrics.registry.gather();
            match prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
                Ok(()) => respond(200, text.into_bytes(), TEXT),
                Err(error) => respond(500, error.to_string().into_bytes(), TEXT),
            }
        }
        (&Method::GET, "/healthz") => respond(200, b"ok\n".to_vec(), TEXT),
        (&Method::GET, "/readyz") if *ready.borrow() => respond(200, b"ready\n".to_vec(), TEXT),
        (&Method::GET, "/readyz") => respond(503, b"starting\n".to_vec(), TEXT),
        _ => respond(404, b"not found\n".to_vec(), TEXT),
    })
}

/// Runs the operator until SIGTERM, Ctrl-C or the loss of its leader lease.
pub async fn run(options: OperatorOptions) -> Result<(), OperatorError> {
    let client = Client::try_default()
        .await
        .map_err(|e| OperatorError::Config(e.to_string()))?;
    let service_monitors = serves_service_monitors(&client).await;
    tracing::info!(
        service_monitors,
        "ServiceMonitors {}",
        if service_monitors {
            "are served: each Stream gets one"
        } else {
            "are not served (no Prometheus Operator): none are created"
        }
    );
    let identity = options.leader_election.as_ref().map(|(_, id)| id.clone());
    let mut ctx = Context::new(
        client.clone(),
        options.defaults.clone(),
        options.brokers.clone(),
        service_monitors,
        identity,
    );
    if let Some(context) = Arc::get_mut(&mut ctx) {
        context.recheck = options.recheck;
    }

    let listener = tokio::net::TcpListener::bind(options.metrics_listen)
        .await
        .map_err(|e| OperatorError::Listen {
            address: options.metrics_listen,
            message: e.to_string(),
        })?;
    let (ready_tx, ready) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let telemetry_ctx = ctx.clone();
    let telemetry_task = tokio::spawn(serve(
        listener,
        None,
        move |request| telemetry(telemetry_ctx.clone(), ready.clone(), request),
        stop.clone(),
    ));
    println!(
        "brook operator started (metrics on http://{}/metrics)",
        options.metrics_listen
    );

    let elector = options
        .leader_election
        .as_ref()
        .map(|(namespace, identity)| {
            Arc::new(Elector::new(
                client.clone(),
                namespace,
                LEASE_NAME,
                identity,
                std::time::Duration::from_secs(15),
            ))
        });
    if let Some(elector) = &elector {
        // A follower is healthy and ready: it serves its endpoints and waits its turn.
        let _ = ready_tx.send(true);
        tracing::info!("waiting for the leader lease");
        tokio::select! {
            _ = elector.acquire() => tracing::info!("leading"),
            _ = wait_for_signal() => {
                let _ = stop_tx.send(true);
                let _ = telemetry_task.await;
                return Ok(());
            }
        }
    }
    let _ = ready_tx.send(true);

    let lost = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let lost = lost.clone();
        async move {
            tokio::select! {
                _ = wait_for_signal() => tracing::info!("shutting down: finishing running reconciles"),
                _ = lost.notified() => tracing::error!("lost the leader lease: stopping"),
            }
        }
        .shared()
    };
    let holder = elector.clone().map(|elector| {
        let lost = lost.clone();
        tokio::spawn(async move {
            elector.hold().await;
            lost.notify_one();
            true
        })
    });
    run_controllers(ctx, options.watch_namespace.clone(), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = telemetry_task.await;
    if let Some(holder) = holder {
        if holder.is_finished() {
            if holder.await.unwrap_or(false) {
                return Err(OperatorError::LostLease);
            }
        } else {
            holder.abort();
        }
    }
    // A clean stop hands the Lease over at once instead of letting it lapse.
    if let Some(elector) = &elector {
        match elector.release().await {
            Ok(true) => tracing::info!("released the leader lease"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "could not release the leader lease"),
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}
