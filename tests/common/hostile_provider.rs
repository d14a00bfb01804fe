//! A deliberately broken OpenID provider, served in the test process, for failures a
//! standards-following provider never produces: token errors sent with HTTP 200, ID
//! tokens signed with a key the JWKS does not contain, missing ID tokens, and extra
//! audiences without `azp`.

use std::{
    process::Command,
    sync::{Arc, Mutex},
};

use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, Nonce, PrivateSigningKey,
    StandardClaims, SubjectIdentifier,
    core::{CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey},
};
use poem::{
    EndpointExt, Route, Server, get, handler,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::{Data, Json},
};
use serde_json::{Value, json};

/// What the token endpoint returns.
#[derive(Clone, Copy, Debug)]
pub enum TokenReply {
    /// `{"error":"invalid_grant"}` with status 200.
    ErrorWithStatus200,
    /// A well-formed ID token signed with a key that the JWKS does not list.
    SignedWithUnknownKey,
    /// An access token and no ID token.
    NoIdToken,
    /// A correctly signed ID token whose `aud` also names another client, with no `azp`.
    ExtraAudienceWithoutAzp,
}

struct ProviderState {
    issuer: String,
    client_id: String,
    reply: TokenReply,
    published_key: CoreRsaPrivateSigningKey,
    unknown_key: CoreRsaPrivateSigningKey,
    /// The nonce of the latest authorization request, copied by the test.
    nonce: Mutex<String>,
}

pub struct HostileProvider {
    pub issuer: String,
    state: Arc<ProviderState>,
}

fn rsa_key() -> CoreRsaPrivateSigningKey {
    let output = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("run openssl to make a test key");
    let pem = String::from_utf8(output.stdout).expect("PEM is ASCII");
    CoreRsaPrivateSigningKey::from_pem(&pem, None).expect("parse the test key")
}

impl HostileProvider {
    pub async fn start(client_id: &str, reply: TokenReply) -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(ProviderState {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            reply,
            published_key: rsa_key(),
            unknown_key: rsa_key(),
            nonce: Mutex::new(String::new()),
        });
        let app = Route::new()
            .at("/.well-known/openid-configuration", get(discovery))
            .at("/jwks", get(jwks))
            .at("/token", post(token))
            .data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { issuer, state }
    }

    /// Records the nonce the app sent, so that issued ID tokens carry it.
    pub fn expect_nonce(&self, nonce: &str) {
        *self.state.nonce.lock().unwrap() = nonce.to_owned();
    }
}

#[handler]
fn discovery(state: Data<&Arc<ProviderState>>) -> Json<Value> {
    let issuer = &state.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

#[handler]
fn jwks(state: Data<&Arc<ProviderState>>) -> Json<Value> {
    let key = state.published_key.as_verification_key();
    Json(json!({ "keys": [key] }))
}

#[handler]
fn token(state: Data<&Arc<ProviderState>>) -> Json<Value> {
    let reply = match state.reply {
        TokenReply::ErrorWithStatus200 => json!({ "error": "invalid_grant" }),
        TokenReply::NoIdToken => json!({ "access_token": "at", "token_type": "Bearer" }),
        TokenReply::SignedWithUnknownKey => token_reply(&state, &state.unknown_key, &[]),
        TokenReply::ExtraAudienceWithoutAzp => {
            token_reply(&state, &state.published_key, &["another-client"])
        }
    };
    Json(reply)
}

fn token_reply(
    state: &ProviderState,
    key: &CoreRsaPrivateSigningKey,
    extra_audiences: &[&str],
) -> Value {
    let mut audiences = vec![Audience::new(state.client_id.clone())];
    audiences.extend(
        extra_audiences
            .iter()
            .map(|aud| Audience::new(aud.to_string())),
    );
    let now = chrono::Utc::now();
    let standard = StandardClaims::new(SubjectIdentifier::new("hostile-1".into()))
        .set_email(Some(EndUserEmail::new("h@example.com".into())))
        .set_email_verified(Some(true));
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(state.issuer.clone()).unwrap(),
        audiences,
        now + chrono::Duration::minutes(5),
        now,
        standard,
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(state.nonce.lock().unwrap().clone())));
    let id_token = CoreIdToken::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .unwrap();
    json!({ "access_token": "at", "token_type": "Bearer", "id_token": id_token.to_string() })
}
