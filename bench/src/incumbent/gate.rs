//! A loopback TCP forwarder in front of the real server, one per client, that the bench can
//! close: while closed its port refuses connections (nothing listens) and the connections it
//! carried are cut, as when a Vault pod is gone; the server itself keeps running, so its clock,
//! its tokens and their expiry go on. Reopened on the same port, it forwards again.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The connections a gate carries, both halves, so closing can cut them.
type Carried = Arc<Mutex<Vec<TcpStream>>>;

/// An open or closed forwarder from `127.0.0.1:port` to the server.
pub struct Gate {
    port: u16,
    upstream: SocketAddr,
    carried: Carried,
    accepting: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Gate {
    /// Opens a gate on a free loopback port forwarding to `upstream`.
    pub fn open(upstream: SocketAddr) -> io::Result<Gate> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mut gate = Gate {
            port,
            upstream,
            carried: Arc::default(),
            accepting: None,
        };
        gate.serve(listener)?;
        Ok(gate)
    }

    /// `http://127.0.0.1:PORT`: the address a client is given.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether it forwards now.
    pub fn is_open(&self) -> bool {
        self.accepting.is_some()
    }

    fn serve(&mut self, listener: TcpListener) -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, carried, flag) = (self.upstream, self.carried.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("gate-{}", self.port))
            .spawn(move || accept_loop(listener, upstream, carried, flag))?;
        self.accepting = Some((stop, thread));
        Ok(())
    }

    /// Stops listening (new connections are refused) and cuts every carried connection.
    pub fn close(&mut self) {
        if let Some((stop, thread)) = self.accepting.take() {
            stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept; it sees the flag and drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = thread.join();
        }
        let mut carried = self.carried.lock().unwrap_or_else(|e| e.into_inner());
        for s in carried.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Listens on the same port again (std sets SO_REUSEADDR, so the old connections in
    /// TIME_WAIT do not block the bind).
    pub fn reopen(&mut self) -> io::Result<()> {
        if self.is_open() {
            return Ok(());
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port))?;
        self.serve(listener)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    carried: Carried,
    stop: Arc<AtomicBool>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(down) = conn else { continue };
        // The server refusing or gone: drop the client's connection, as a dead proxy would.
        let Ok(up) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let (Ok(down2), Ok(up2), Ok(down3), Ok(up3)) = (
            down.try_clone(),
            up.try_clone(),
            down.try_clone(),
            up.try_clone(),
        ) else {
            continue;
        };
        {
            let mut list = carried.lock().unwrap_or_else(|e| e.into_inner());
            // Forget connections both sides have finished with, so the list stays short.
            list.retain(|s| s.peer_addr().is_ok());
            list.push(down3);
            list.push(up3);
        }
        std::thread::spawn(move || pipe(down, up));
        std::thread::spawn(move || pipe(up2, down2));
    }
}

/// Copies `from` to `to` until either ends, then ends both directions.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server: answers every connection with what it receives.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = c.try_clone().expect("clone");
                    let mut w = c;
                    let _ = io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn round_trip(port: u16) -> io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    #[test]
    fn forwards_refuses_while_closed_and_reopens_on_the_same_port() {
        let mut gate = Gate::open(echo()).expect("gate");
        let port = gate.port;
        assert_eq!(round_trip(port).expect("open gate"), "ping");

        // A connection held across the closing is cut.
        let mut held = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        held.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        held.read_exact(&mut buf).expect("echo");
        gate.close();
        let mut rest = Vec::new();
        let cut = held.read_to_end(&mut rest);
        assert!(
            cut.is_err() || rest.is_empty(),
            "held connection still carried"
        );

        // Refused: unless another test's listener was given the freed port meanwhile (tests run
        // in parallel on ephemeral ports); then it is not the gate answering, so no echo here.
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok(_) => eprintln!("port {port} reused by another listener while the gate was closed"),
        }

        gate.reopen().expect("reopen");
        assert_eq!(gate.url(), format!("http://127.0.0.1:{port}"));
        assert_eq!(round_trip(port).expect("reopened gate"), "ping");
    }
}
