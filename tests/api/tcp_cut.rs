//! A loopback TCP relay that a test can cut: every open connection is
//! dropped and new ones are closed at once, as when a database server goes
//! away; `restore` lets connections through again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct TcpCut {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Cancelled on `cut`: ends every relayed connection of this generation.
    generation: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

/// A relay in front of the database at `url`, and the URL through it.
pub async fn relay_to(url: &str) -> (TcpCut, String) {
    let mut url = url::Url::parse(url).unwrap();
    let target: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        .parse()
        .unwrap();
    let cut = TcpCut::start(target).await;
    url.set_port(Some(cut.addr().port())).unwrap();
    (cut, url.to_string())
}

impl TcpCut {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (cut2, generation2, stop2) = (Arc::clone(&cut), Arc::clone(&generation), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = stop2.cancelled() => return,
                };
                let Ok((client, _)) = accepted else { continue };
                if cut2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = generation2.lock().unwrap().clone();
                tokio::spawn(relay(client, target, token));
            }
        });
        Self {
            addr,
            cut,
            generation,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut generation = self.generation.lock().unwrap();
        generation.cancel();
        *generation = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.stop.cancel();
        self.generation.lock().unwrap().cancel();
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, token: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = token.cancelled() => {}
    }
}
