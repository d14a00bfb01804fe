//! Startup and graceful shutdown.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use poem::{
    Server,
    listener::{Acceptor, Listener, TcpListener},
    web::cookie::CookieKey,
};

use crate::{
    app::{self, AppState},
    auth::{LoginBackend, dev_login, oidc::OidcLogin, session::Sessions},
    config::{AppConfig, LoginMode, ServeArgs},
    http_metrics::HttpMetrics,
    telemetry::{self, Telemetry},
};

/// Connections with no traffic for this long are closed, so idle or stalled clients
/// cannot hold file descriptors forever.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the service until SIGTERM or Ctrl-C, then finishes in-flight requests and
/// flushes the logs, each within the shutdown timeout.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.validate().context("invalid configuration")?;
    let telemetry = telemetry::init(&args.telemetry)?;
    let result = run(config, telemetry.clone()).await;
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "service failed");
    }
    let flush_deadline = telemetry.shutdown_timeout();
    telemetry.shutdown(flush_deadline).await;
    result
}

async fn run(config: AppConfig, telemetry: Telemetry) -> anyhow::Result<()> {
    let login = login_backend(&config).await?;
    let cookie_key = match &config.session_key {
        Some(key) => CookieKey::derive_from(key.expose().as_bytes()),
        None => CookieKey::generate(),
    };
    let acceptor = TcpListener::bind(config.listen)
        .into_acceptor()
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let local_addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|addr| addr.as_socket_addr().copied());
    let state = Arc::new(AppState {
        config: config.clone(),
        login,
        cookie_key,
        sessions: sessions(&config),
        telemetry,
        http_metrics: HttpMetrics::default(),
    });
    tracing::info!(
        addr = local_addr.map(|addr| addr.to_string()),
        public_url = %config.public_url,
        "listening"
    );
    Server::new_with_acceptor(acceptor)
        .idle_timeout(IDLE_CONNECTION_TIMEOUT)
        .run_with_graceful_shutdown(
            app::build(state),
            shutdown_signal(),
            Some(config.shutdown_timeout),
        )
        .await
        .context("server failed")?;
    tracing::info!("server stopped");
    Ok(())
}

fn sessions(config: &AppConfig) -> Sessions {
    match &config.login {
        LoginMode::Oidc(settings) => Sessions::new(
            config.session_ttl,
            settings.issuer.clone(),
            settings.allowed_email_domains.clone(),
        ),
        LoginMode::Development => Sessions::new(
            config.session_ttl,
            dev_login::PROVIDER.to_owned(),
            Vec::new(),
        ),
    }
}

async fn login_backend(config: &AppConfig) -> anyhow::Result<LoginBackend> {
    match &config.login {
        LoginMode::Oidc(settings) => {
            let oidc = OidcLogin::discover(settings, &config.redirect_url).await?;
            tracing::info!(issuer = %settings.issuer, "OpenID Connect provider discovered");
            Ok(LoginBackend::Oidc(Box::new(oidc)))
        }
        LoginMode::Development => {
            tracing::warn!(
                "development login is on: anyone can sign in with any name; \
                 set OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET and SESSION_KEY for real sign-in"
            );
            Ok(LoginBackend::Development)
        }
    }
}

/// Completes on SIGTERM (what Docker and Kubernetes send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
