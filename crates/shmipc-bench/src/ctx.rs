//! What both processes need to set up their ends of the contenders: the run's name
//! prefix, which side they are, and the kernel objects (eventfds, pipes, a socket
//! pair) that the harness creates before it starts the peer, which inherits them.
#![allow(unsafe_code)] // `OwnedFd::from_raw_fd` on the descriptors the peer inherits.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use rustix::event::{eventfd, EventfdFlags};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use rustix::pipe::{pipe_with, PipeFlags};

use crate::Result;

/// Which end of a contender this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The harness: creates the shared objects, sends pings, consumes streams, and times.
    Client,
    /// The peer: opens the shared objects, echoes pings, produces streams.
    Server,
}

/// The inherited descriptors, by index in `--fds`.
pub mod fd {
    /// eventfd the client signals a ping on.
    pub const EFD_PING: usize = 0;
    /// eventfd the server signals a pong on.
    pub const EFD_PONG: usize = 1;
    /// Pipe client -> server, read end.
    pub const PIPE_PING_R: usize = 2;
    /// Pipe client -> server, write end.
    pub const PIPE_PING_W: usize = 3;
    /// Pipe server -> client, read end.
    pub const PIPE_PONG_R: usize = 4;
    /// Pipe server -> client, write end.
    pub const PIPE_PONG_W: usize = 5;
    /// The client's end of the Unix socket pair.
    pub const SOCK_CLIENT: usize = 6;
    /// The server's end of the Unix socket pair.
    pub const SOCK_SERVER: usize = 7;
    /// How many.
    pub const COUNT: usize = 8;
}

/// Set-up context of one process.
#[derive(Debug)]
pub struct Ctx {
    /// This process's side.
    pub side: Side,
    /// Unique prefix of every named object of this run (`shmipc-bench-<harness pid>`).
    pub prefix: String,
    fds: Vec<Option<OwnedFd>>,
}

impl Ctx {
    /// The harness's context: creates the kernel objects, without close-on-exec so
    /// that the peer inherits them.
    pub fn client() -> Result<Ctx> {
        let flags_efd = EventfdFlags::empty();
        let (ping_r, ping_w) = pipe_with(PipeFlags::empty())?;
        let (pong_r, pong_w) = pipe_with(PipeFlags::empty())?;
        let (sc, ss) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::empty(),
            None,
        )?;
        let fds = vec![
            Some(eventfd(0, flags_efd)?),
            Some(eventfd(0, flags_efd)?),
            Some(ping_r),
            Some(ping_w),
            Some(pong_r),
            Some(pong_w),
            Some(sc),
            Some(ss),
        ];
        debug_assert_eq!(fds.len(), fd::COUNT);
        Ok(Ctx {
            side: Side::Client,
            prefix: format!("shmipc-bench-{}", std::process::id()),
            fds,
        })
    }

    /// The descriptor numbers to hand to the peer (`--fds`).
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds
            .iter()
            .map(|f| f.as_ref().map_or(-1, |f| f.as_raw_fd()))
            .collect()
    }

    /// The peer's context, from the harness's prefix and descriptor numbers.
    pub fn server(prefix: String, raw: &[RawFd]) -> Result<Ctx> {
        if raw.len() != fd::COUNT {
            return Err(format!(
                "--fds needs {} descriptor numbers, got {}",
                fd::COUNT,
                raw.len()
            )
            .into());
        }
        let mut fds = Vec::with_capacity(raw.len());
        for (i, &n) in raw.iter().enumerate() {
            if raw[..i].contains(&n) {
                return Err(format!("--fds: {n} is given twice").into());
            }
            // Refuse anything that is not an open descriptor of this process.
            if n < 0
                || rustix::io::fcntl_getfd(
                    // SAFETY: `n` is only borrowed for this one `fcntl(F_GETFD)`, which
                    // fails cleanly with EBADF on a closed number.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(n) },
                )
                .is_err()
            {
                return Err(format!("--fds: {n} is not an open descriptor").into());
            }
            // SAFETY: the harness created `n` without close-on-exec for this peer and
            // nothing else in this process uses it; each number appears once in
            // `--fds`, so this is the descriptor's only owner.
            fds.push(Some(unsafe { OwnedFd::from_raw_fd(n) }));
        }
        Ok(Ctx {
            side: Side::Server,
            prefix,
            fds,
        })
    }

    /// Takes descriptor `i` (an index from [`fd`]); each can be taken once.
    pub fn take_fd(&mut self, i: usize) -> Result<OwnedFd> {
        self.fds
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| format!("descriptor #{i} is missing or already taken").into())
    }

    /// A run-unique object name ending in `what`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }
}
