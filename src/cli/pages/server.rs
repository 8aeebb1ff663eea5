//! The hyper server of the pages and its routes: who may reach which page, CSRF on every
//! POST, login and logout, partner links, and `/a/...` handed to the action links' server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dealreg_actions::{parse_form, LinkRefused, MAX_FORM_BYTES};
use dealreg_clock::Clock;
use dealreg_domain::Actor;
use dealreg_events::EventStore;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::COOKIE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::access::{self, Role, Users, PARTNER_PAGE};
use super::layout::{self, escape, Page};
use super::sessions::{self, Session};
use super::Pages;

const MAX_CONNECTIONS: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the pages on `listener` until `shutdown` completes.
pub async fn serve_pages<S: EventStore, C: Clock>(
    listener: TcpListener,
    pages: Arc<Pages<S, C>>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a pages connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let pages = Arc::clone(&pages);
                async move { Ok::<_, Infallible>(route(&pages, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "pages connection ended with an error");
            }
        });
    }
    tracing::info!("pages server stopped accepting");
}

/// A request as the pages see it once its session is known.
pub(super) struct Seen {
    pub session: Session,
    pub method: Method,
    pub path: String,
    pub form: BTreeMap<String, String>,
}

impl Seen {
    /// The engine's actor for this session.
    pub fn actor(&self) -> Option<Actor> {
        access::User {
            name: self.session.user.clone(),
            role: self.session.role,
            partner_id: self.session.partner_id,
            password_hash: None,
        }
        .actor()
    }
}

async fn route<S: EventStore, C: Clock>(pages: &Pages<S, C>, req: Request<Incoming>) -> Page {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path.starts_with("/a/") {
        return match pages.links {
            Some(addr) => forward(addr, req).await,
            None => not_found(),
        };
    }
    let cookies = req
        .headers()
        .get(COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let form = if method == Method::POST {
        match read_form(req).await {
            Ok(form) => form,
            Err(page) => return page,
        }
    } else {
        BTreeMap::new()
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => return login_form(pages, StatusCode::OK, "", ""),
        (&Method::POST, "/login") => return login(pages, &cookies, &form).await,
        (&Method::GET, p) if p.starts_with("/p/") => return partner_link(pages, &p[3..]),
        _ => {}
    }
    let token = sessions::cookie(&cookies, sessions::COOKIE).unwrap_or("");
    let Some(session) = (!token.is_empty())
        .then(|| pages.sessions.get(token, Utc::now()))
        .flatten()
    else {
        return layout::see_other("/login", &[]);
    };
    if method == Method::POST {
        let given = form.get("csrf").map(String::as_str).unwrap_or("");
        if given.is_empty() || !sessions::same_secret(given, &session.csrf) {
            tracing::info!(user = %session.user, path = %path, "a POST without its CSRF token was refused");
            return layout::message(
                StatusCode::FORBIDDEN,
                "Not accepted",
                "This form was not sent from a page of this session. Reload the page and send it again.",
            );
        }
    }
    if (&method, path.as_str()) == (&Method::POST, "/logout") {
        pages.sessions.end(token);
        tracing::info!(user = %session.user, "logged out");
        return layout::see_other(
            "/login",
            &[sessions::set_cookie(
                sessions::COOKIE,
                "",
                pages.secure_cookies,
                Some(0),
            )],
        );
    }
    let seen = Seen {
        session,
        method,
        path,
        form,
    };
    let partner_area = seen.path == "/partner" || seen.path.starts_with("/partner/");
    let is_partner = seen.session.role == Role::Partner;
    if partner_area != is_partner {
        return layout::message(
            StatusCode::FORBIDDEN,
            "Not yours to see",
            if is_partner {
                "This page is the channel team's. Your page is at /partner."
            } else {
                "These pages are a partner's; the channel team's dashboard is at /."
            },
        );
    }
    match (&seen.method, seen.path.as_str()) {
        (&Method::GET, "/") => super::dashboard::page(pages, &seen).await,
        (&Method::GET, "/partner") => super::partner::page(pages, &seen).await,
        (&Method::GET, "/partner/register") => super::form::show(pages, &seen).await,
        (&Method::POST, "/partner/register") => super::form::submit(pages, &seen).await,
        (&Method::GET, p) if p.starts_with("/partner/registrations/") => {
            super::form::status(pages, &seen, &p["/partner/registrations/".len()..]).await
        }
        (&Method::POST, p)
            if p.starts_with("/partner/announcements/") && p.ends_with("/acknowledge") =>
        {
            let id = &p["/partner/announcements/".len()..p.len() - "/acknowledge".len()];
            super::partner::acknowledge(pages, &seen, id).await
        }
        _ => not_found(),
    }
}

pub(super) fn not_found() -> Page {
    layout::message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address.",
    )
}

async fn read_form(req: Request<Incoming>) -> Result<BTreeMap<String, String>, Page> {
    match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => Ok(parse_form(&b.to_bytes())),
        Err(_) => Err(layout::message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form did not arrive",
            "The form was too large or did not arrive whole. Go back and send it again.",
        )),
    }
}

/// Hands an action link's request to the links' server on loopback and its answer back.
async fn forward(addr: SocketAddr, req: Request<Incoming>) -> Page {
    let failed = || {
        layout::message(
            StatusCode::BAD_GATEWAY,
            "Try again in a minute",
            "The action links are not answering now. Nothing was done.",
        )
    };
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "the action links' server cannot be reached");
            return failed();
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "the action links' server did not take the connection");
            return failed();
        }
    };
    tokio::spawn(conn);
    let answer = match sender.send_request(req).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "the action links' server did not answer");
            return failed();
        }
    };
    let (parts, body) = answer.into_parts();
    match body.collect().await {
        Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
        Err(_) => failed(),
    }
}

fn login_form<S, C>(pages: &Pages<S, C>, status: StatusCode, user: &str, error: &str) -> Page {
    let csrf = match sessions::random_token() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "no CSRF token for the login form");
            return layout::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Try again",
                "The server could not make a form now.",
            );
        }
    };
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(
            "<p id=\"login-error\" class=\"error\">{}</p>",
            escape(error)
        )
    };
    let none = if pages.users.is_none() {
        "<p class=\"note\">This server has no users file (<code>--users</code>): nobody can log in.</p>"
    } else {
        ""
    };
    let body = format!(
        "{none}{error}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"user\">User</label><input id=\"user\" name=\"user\" autocomplete=\"username\" required value=\"{}\">\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <p><button type=\"submit\">Log in</button></p></form>\
         <p class=\"note\">Partners may also come in through the link their channel manager sent.</p>",
        escape(user)
    );
    layout::set_cookie(
        layout::page(status, "Log in", None, &body),
        &sessions::set_cookie(
            sessions::LOGIN_COOKIE,
            &csrf,
            pages.secure_cookies,
            Some(3600),
        ),
    )
}

async fn login<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    cookies: &str,
    form: &BTreeMap<String, String>,
) -> Page {
    let expected = sessions::cookie(cookies, sessions::LOGIN_COOKIE).unwrap_or("");
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if expected.is_empty() || given.is_empty() || !sessions::same_secret(expected, given) {
        return layout::message(
            StatusCode::FORBIDDEN,
            "Not accepted",
            "The login form had expired or was not sent from this site. Open /login again.",
        );
    }
    let name = form
        .get("user")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let now = Utc::now();
    if let Some(until) = pages.sessions.locked_until(&name, now) {
        tracing::info!(user = %name, "login refused: too many failures");
        return login_form(
            pages,
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            &format!(
                "Too many wrong passwords for this user: logins are refused until {} (about a minute). Try again then.",
                until.format("%H:%M:%S UTC")
            ),
        );
    }
    let user = match &pages.users {
        Some(path) => match Users::read(path) {
            Ok(users) => users.find(&name).cloned(),
            Err(e) => {
                tracing::error!(error = %e, "the users file cannot be read");
                None
            }
        },
        None => None,
    };
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| access::decoy_hash().to_string());
    let matches = tokio::task::spawn_blocking(move || access::password_matches(&password, &hash))
        .await
        .unwrap_or(false);
    let user = user.filter(|u| matches && u.password_hash.is_some() && u.actor().is_some());
    let Some(user) = user else {
        pages.sessions.failed(&name, now);
        tracing::info!(user = %name, "login refused: wrong user name or password");
        return login_form(
            pages,
            StatusCode::UNAUTHORIZED,
            &name,
            "Wrong user name or password.",
        );
    };
    pages.sessions.succeeded(&name);
    start_session(pages, &user.name, user.role, user.partner_id)
}

fn start_session<S, C>(
    pages: &Pages<S, C>,
    user: &str,
    role: Role,
    partner: Option<uuid::Uuid>,
) -> Page {
    match pages.sessions.start(user, role, partner, Utc::now()) {
        Ok((token, _)) => {
            tracing::info!(user = %user, role = ?role, "session started");
            let home = if role == Role::Partner {
                "/partner"
            } else {
                "/"
            };
            layout::see_other(
                home,
                &[sessions::set_cookie(
                    sessions::COOKIE,
                    &token,
                    pages.secure_cookies,
                    None,
                )],
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "a session could not be started");
            layout::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Try again",
                "The session could not be started.",
            )
        }
    }
}

/// `GET /p/<token>`: a partner's signed link starts a partner session.
fn partner_link<S, C>(pages: &Pages<S, C>, token: &str) -> Page {
    let (Some(key), Some(path)) = (&pages.key, &pages.users) else {
        return not_found();
    };
    let link = match key.verify(token, Utc::now()) {
        Ok(link) => link,
        Err(refused) => {
            let status = match refused {
                LinkRefused::Expired { .. } => StatusCode::GONE,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(status = status.as_u16(), "a partner page link was refused");
            let title = if status == StatusCode::GONE {
                "This link has expired"
            } else {
                "This link cannot be used"
            };
            return layout::message(status, title, &refused.to_string());
        }
    };
    let refused = || {
        layout::message(
            StatusCode::BAD_REQUEST,
            "This link cannot be used",
            "This link is not a partner page link, or its user no longer has access. Ask your channel manager for a new one.",
        )
    };
    if link.action != PARTNER_PAGE {
        return refused();
    }
    let Ok(Actor::Partner { partner_id, user }) =
        serde_json::from_value::<Actor>(link.actor.clone())
    else {
        return refused();
    };
    let known = Users::read(path)
        .ok()
        .and_then(|u| u.partner_user(&user, partner_id.0).map(|u| u.name.clone()));
    let Some(user) = known else {
        return refused();
    };
    tracing::info!(link = %link.id, user = %user, "partner page link used");
    start_session(pages, &user, Role::Partner, Some(partner_id.0))
}
