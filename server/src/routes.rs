//! Every route of the console behind one stack of layers (request id and span, the edge's
//! bounds, compression, caching, the auth guard), and the Leptos options the page is served
//! with.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::CompressionLevel;
use tower_http::LatencyUnit;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use app::api::ConsoleContext;

use crate::config::Config;
use crate::{AppState, assets, auth, batches, callbacks, chat, edge, enrol, health, library, live, mcp, metrics, panels, receipts, relay, share, single_sign_on, spend};

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("control-room")
        .hash_files(assets::hashed())
        .site_root(config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.site_addr)
        .env(Env::PROD)
        .build()
}

/// Every route of the console.
pub fn router(state: AppState, console: ConsoleContext) -> Router {
    let routes = generate_route_list(app::App);
    let shell_options = state.leptos_options.clone();
    let panels = panels::routes(console.clone());
    let context = move || {
        leptos::prelude::provide_context(console.clone());
        leptos::prelude::provide_context(app::api::StatusMemo::default());
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/callbacks/kie/{token}", post(callbacks::kie_callback))
        .route("/events", get(live::events))
        .route("/draft/{token}", get(chat::draft))
        .route("/metrics", get(metrics::metrics))
        .route("/library/{task}/{n}", get(library::asset))
        // Bounded by the edge and the handler (`UPLOAD_MAX_MB`), not by axum's 2 MB default.
        .route("/library/upload", post(library::upload).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/batches/{name}/zip", get(batches::zip))
        .route("/receipts.json", get(receipts::json))
        .route("/receipts.csv", get(receipts::csv))
        .route("/spend.svg", get(spend::chart))
        .route("/spend.csv", get(spend::table))
        .merge(relay::routes().route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::relay_requests)))
        .merge(mcp::routes(&state).route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::relay_requests)))
        .merge(auth::routes())
        .merge(enrol::routes())
        .merge(single_sign_on::routes())
        .merge(share::routes())
        .merge(panels)
        .merge(assets::routes(&state.leptos_options))
        .leptos_routes_with_context(&state, routes, context, move || app::shell(shell_options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(app::shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        // Pages and answers no cache may keep without asking again (the bundle and the
        // Library's files set their own).
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // Pages and panels compressed as the browser asks (the bundle is precompressed; the live
        // stream, media and everything else pass as they are).
        .layer(CompressionLayer::new().quality(CompressionLevel::Precise(4)).compress_when(assets::html_only))
        .layer(axum::middleware::from_fn(edge::limits::bound))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// One span per request: its id (also the `X-Request-Id` answered), method and route (the
/// route's pattern, never the path itself: a callback's path carries its token). The actor and
/// the task are recorded on it once known.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str());
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route, actor = tracing::field::Empty, task = tracing::field::Empty)
}
