//! A route-netlink socket that asks the kernel one thing at a time and reads
//! only the answers this task needs.
//!
//! The messages themselves are built and read by the netlink-packet crates
//! (the same that rtnetlink uses, and rtnetlink's builders make the
//! requests); this file only sends a request and collects its answers.
//! rtnetlink's own connection is not used because it decodes every answer as
//! any message the kernel's routing family knows (links of every kind with
//! all their settings, traffic control, neighbour tables, rules…): that
//! links ~300 KiB of parsers into the binary, a twentieth of it, for a task
//! that reads a link's index, addresses and routes. Here a link answer is
//! read to its header only; addresses and routes are read whole.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use rtnetlink::packet_core::{
    DecodeError, Emitable, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable, Parseable, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkHeader, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::sys::{
    protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket,
};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;

/// Answers a dump may hold before it is refused: a namespace with more
/// addresses or routes than this is not the test namespace.
const MAX_ANSWERS: usize = 100_000;

/// A request: one of the messages this task sends.
pub(crate) enum Request {
    NewLink(LinkMessage),
    SetLink(LinkMessage),
    DelLink(LinkMessage),
    GetLink(LinkMessage),
    NewAddress(AddressMessage),
    DelAddress(AddressMessage),
    GetAddress(AddressMessage),
    NewRoute(RouteMessage),
    DelRoute(RouteMessage),
    GetRoute(RouteMessage),
}

impl Request {
    /// The request for the link called `name` (answered by its header, or
    /// refused with ENODEV).
    pub(crate) fn link_named(name: &str) -> Request {
        let mut query = LinkMessage::default();
        query
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        Request::GetLink(query)
    }

    fn body(&self) -> &dyn Emitable {
        match self {
            Request::NewLink(m)
            | Request::SetLink(m)
            | Request::DelLink(m)
            | Request::GetLink(m) => m,
            Request::NewAddress(m) | Request::DelAddress(m) | Request::GetAddress(m) => m,
            Request::NewRoute(m) | Request::DelRoute(m) | Request::GetRoute(m) => m,
        }
    }
}

impl NetlinkSerializable for Request {
    fn message_type(&self) -> u16 {
        match self {
            Request::NewLink(_) => RTM_NEWLINK,
            Request::SetLink(_) => RTM_SETLINK,
            Request::DelLink(_) => RTM_DELLINK,
            Request::GetLink(_) => RTM_GETLINK,
            Request::NewAddress(_) => RTM_NEWADDR,
            Request::DelAddress(_) => RTM_DELADDR,
            Request::GetAddress(_) => RTM_GETADDR,
            Request::NewRoute(_) => RTM_NEWROUTE,
            Request::DelRoute(_) => RTM_DELROUTE,
            Request::GetRoute(_) => RTM_GETROUTE,
        }
    }

    fn buffer_len(&self) -> usize {
        self.body().buffer_len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.body().emit(buffer)
    }
}

/// An answer, read as far as this task needs it.
pub(crate) enum Answer {
    /// A link: its header (index, flags), not its attributes.
    Link(LinkHeader),
    Address(AddressMessage),
    Route(RouteMessage),
    /// Any other message type, not read.
    Other,
}

impl NetlinkDeserializable for Answer {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(match header.message_type {
            RTM_NEWLINK => Answer::Link(LinkHeader::parse(payload)?),
            RTM_NEWADDR => Answer::Address(AddressMessage::parse(payload)?),
            RTM_NEWROUTE => Answer::Route(RouteMessage::parse(payload)?),
            _ => Answer::Other,
        })
    }
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Error {
    /// The kernel refused, with this errno (positive).
    Kernel(i32),
    /// The socket failed, or an answer could not be read.
    Io(io::Error),
    Decode(String),
}

impl Error {
    /// The kernel's errno, if the kernel refused.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel(n) => Some(*n),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Kernel(n) => write!(
                f,
                "the kernel refused: {}",
                io::Error::from_raw_os_error(*n)
            ),
            Error::Io(e) => write!(f, "netlink socket: {e}"),
            Error::Decode(e) => write!(f, "unreadable netlink answer: {e}"),
        }
    }
}

/// A route-netlink socket of the namespace it was opened in (a netlink
/// socket stays there, whatever thread uses it later).
pub struct Rtnl {
    socket: TokioSocket,
    sequence: AtomicU32,
    /// One exchange at a time, so answers are never interleaved.
    turn: tokio::sync::Mutex<()>,
}

impl Rtnl {
    /// Opens a socket in the calling thread's current namespace; must be
    /// called inside a Tokio runtime, which then drives it.
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        socket.socket_mut().bind_auto()?;
        socket.socket_mut().connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket,
            sequence: AtomicU32::new(1),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// Sends `request` and waits for the kernel's acknowledgement.
    pub(crate) async fn ack(&self, request: Request, flags: u16) -> Result<Vec<Answer>, Error> {
        self.exchange(request, NLM_F_REQUEST | NLM_F_ACK | flags, false)
            .await
    }

    /// Sends `request` as a dump and collects every answer.
    pub(crate) async fn dump(&self, request: Request) -> Result<Vec<Answer>, Error> {
        self.exchange(request, NLM_F_REQUEST | NLM_F_DUMP, false)
            .await
    }

    /// Sends `request` (no acknowledgement asked) and returns its answer.
    pub(crate) async fn get(&self, request: Request) -> Result<Vec<Answer>, Error> {
        self.exchange(request, NLM_F_REQUEST, true).await
    }

    /// One request and its answers, until the kernel's acknowledgement or
    /// end of dump, or (`one_answer`) the first answer.
    async fn exchange(
        &self,
        request: Request,
        flags: u16,
        one_answer: bool,
    ) -> Result<Vec<Answer>, Error> {
        let _turn = self.turn.lock().await;
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = sequence;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket.send(&bytes).await.map_err(Error::Io)?;

        let mut answers = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().await.map_err(Error::Io)?;
            let mut at = 0;
            while at < datagram.len() {
                let frame = NetlinkBuffer::new_checked(&datagram[at..])
                    .map_err(|e| Error::Decode(e.to_string()))?;
                let length = frame.length() as usize;
                if length < 16 {
                    return Err(Error::Decode(format!("a message of {length} bytes")));
                }
                let message = NetlinkMessage::<Answer>::deserialize(&datagram[at..at + length])
                    .map_err(|e| Error::Decode(e.to_string()))?;
                at += (length + 3) & !3;
                if message.header.sequence_number != sequence {
                    continue; // an answer to an earlier, abandoned request
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(Error::Kernel(code.get().abs())),
                        }
                    }
                    NetlinkPayload::InnerMessage(answer) => {
                        if answers.len() >= MAX_ANSWERS {
                            return Err(Error::Decode(format!("more than {MAX_ANSWERS} answers")));
                        }
                        answers.push(answer);
                        if one_answer {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    use rtnetlink::AddressMessageBuilder;
    use std::net::Ipv4Addr;

    /// Runs `f` on a thread of its own, in a new, empty network namespace
    /// (only `lo`, down), with a runtime of its own.
    fn in_new_namespace<T: Send + 'static>(
        f: impl FnOnce(Rtnl) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root?)");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move { f(Rtnl::open().expect("netlink socket")).await })
        })
        .join()
        .expect("namespace thread")
    }

    #[test]
    fn a_link_is_found_by_name_and_a_missing_one_is_enodev() {
        let (lo, missing) = in_new_namespace(|rtnl| {
            Box::pin(async move {
                let lo = rtnl.get(Request::link_named("lo")).await.expect("lo");
                let missing = rtnl.get(Request::link_named("zp-none")).await;
                let lo: Vec<u32> = lo
                    .iter()
                    .filter_map(|a| match a {
                        Answer::Link(h) => Some(h.index),
                        _ => None,
                    })
                    .collect();
                (lo, missing.map(|a| a.len()).map_err(|e| e.errno()))
            })
        });
        assert_eq!(lo, [1], "lo is the first link of a new namespace");
        assert_eq!(
            missing,
            Err(Some(19)),
            "ENODEV for a link that is not there"
        );
    }

    #[test]
    fn an_added_address_is_dumped_and_a_refusal_names_the_kernels_reason() {
        let (dumped, refused) = in_new_namespace(|rtnl| {
            Box::pin(async move {
                let ip = Ipv4Addr::new(192, 0, 2, 7);
                let add = AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(1)
                    .address(ip, 24)
                    .build();
                rtnl.ack(Request::NewAddress(add.clone()), NLM_F_CREATE | NLM_F_EXCL)
                    .await
                    .expect("address added");
                let dumped: Vec<(u32, u8)> = rtnl
                    .dump(Request::GetAddress(AddressMessage::default()))
                    .await
                    .expect("dump")
                    .into_iter()
                    .filter_map(|a| match a {
                        Answer::Address(m) => Some((m.header.index, m.header.prefix_len)),
                        _ => None,
                    })
                    .collect();
                // The same address again, exclusively: EEXIST.
                let again = rtnl
                    .ack(Request::NewAddress(add), NLM_F_CREATE | NLM_F_EXCL)
                    .await;
                (dumped, again.err().map(|e| (e.errno(), e.to_string())))
            })
        });
        assert!(dumped.contains(&(1, 24)), "{dumped:?}");
        let (errno, text) = refused.expect("a second exclusive add is refused");
        assert_eq!(errno, Some(17));
        assert!(text.starts_with("the kernel refused: "), "{text}");
    }
}
