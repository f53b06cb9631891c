//! `--simulate`: the KIE simulator (kie-sim) in this process, on a free loopback port, with an
//! account under a freshly generated key. It stops with the server.

use gateway::Secret;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::ServerError;

/// Credits the simulated account starts with.
pub const START_BALANCE: f64 = 10_000.0;

/// A running simulator; dropping it stops it.
pub struct Running {
    pub base: url::Url,
    pub key: Secret,
    _stop: oneshot::Sender<()>,
}

pub async fn start() -> Result<Running, ServerError> {
    let key = Secret::new(format!("sim-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
    let sim = kie_sim::Sim::new(kie_sim::Settings::default());
    sim.add_account(key.expose(), START_BALANCE, None);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let base = url::Url::parse(&format!("http://{addr}")).map_err(std::io::Error::other)?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sim.serve(listener, async move {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "simulator: KIE requests go to the bundled kie-sim");
    Ok(Running { base, key, _stop: stop })
}
