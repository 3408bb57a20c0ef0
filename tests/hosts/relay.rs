//! A TCP relay from an address the hosts reach (a veth address on the machine's side) to a
//! server that listens on loopback only, such as the Messages-API stand-in: inside a host's
//! namespace, 127.0.0.1 is the host's own loopback.

use std::io::ErrorKind;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running relay; it stops taking connections when dropped (those open end with their
/// peers).
pub struct Relay {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accepting: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a free port of `listen` and relays every connection to `target`.
    pub fn start(listen: IpAddr, target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind((listen, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let accepting = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        if let Err(error) = relay(inbound, target) {
                            eprintln!("relay: {error}");
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(error) => eprintln!("relay: {error}"),
                }
            }
        });
        Ok(Relay {
            address,
            stop,
            accepting: Some(accepting),
        })
    }

    /// Where the hosts connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// Copies both ways between `inbound` and a new connection to `target`, each way in a thread
/// of its own that ends when its side closes.
fn relay(inbound: TcpStream, target: SocketAddr) -> std::io::Result<()> {
    inbound.set_nonblocking(false)?;
    let outbound = TcpStream::connect(target)?;
    for (mut from, mut to) in [
        (inbound.try_clone()?, outbound.try_clone()?),
        (outbound, inbound),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    Ok(())
}
