//! Netlink operations on the test link, through rtnetlink.
//!
//! Every function takes a [`Handle`] whose socket was opened in the namespace
//! the operation is meant for: a netlink socket stays in the namespace it was
//! created in, whatever thread uses it later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, Context};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::MacVlanMode;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec, RouteMessageBuilder};

/// errno values the kernel answers with for "no such thing".
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;

/// Opens a netlink socket in the calling thread's current namespace and
/// drives it on the current runtime.
pub fn connect() -> anyhow::Result<Handle> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a netlink route socket")?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The kernel's errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// What went wrong, in words, without the `Debug` dump of a whole netlink
/// message that rtnetlink's own `Display` writes for an unexpected answer:
/// that dump names every message kind the kernel knows, and formatting it
/// would link all of their printers (tens of KiB) into the binary for a
/// case that is a kernel or library bug.
fn describe(e: &rtnetlink::Error) -> String {
    use rtnetlink::Error as E;
    match e {
        E::NetlinkError(m) => format!("the kernel refused: {m}"),
        E::UnexpectedMessage(m) => format!(
            "unexpected netlink answer (type {}, sequence {})",
            m.header.message_type, m.header.sequence_number
        ),
        E::RequestFailed => "the netlink request failed".into(),
        E::NamespaceError(what) => format!("namespace error: {what}"),
        E::InvalidHardwareAddress(_) => "a link answer held an invalid hardware address".into(),
        E::InvalidIp(_) => "an answer held an invalid IP address".into(),
        E::InvalidAddress(..) => "an answer held an invalid network address".into(),
        E::InvalidNla(what) => format!("invalid netlink attribute: {what}"),
    }
}

/// The index of the link called `name`, or `None` if there is none.
pub async fn find(handle: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(anyhow!("looking up link {name}: {}", describe(&e))),
    }
}

/// Creates the macvlan `name` over `parent`, directly inside the namespace
/// open at `netns`. `root` must be a handle of the parent's namespace and
/// `inside` one of the target namespace.
///
/// The link is made under a temporary name and renamed inside, because the
/// kernel looks a new link's name up in the creating socket's namespace first
/// and would refuse if the root namespace has a link of that name.
pub(crate) async fn create_macvlan(
    root: &Handle,
    inside: &Handle,
    parent: &str,
    name: &str,
    netns: BorrowedFd<'_>,
) -> anyhow::Result<u32> {
    let parent_index = find(root, parent)
        .await?
        .ok_or_else(|| anyhow!("parent interface {parent} not found"))?;
    static MADE: AtomicU32 = AtomicU32::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed) % 1000;
    let temporary = format!("zpv{}x{n}", std::process::id() % 100_000);
    let message = LinkMacVlan::new(&temporary, parent_index, MacVlanMode::Bridge)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    root.link()
        .add(message)
        .execute()
        .await
        .map_err(|e| anyhow!("creating macvlan over {parent}: {}", describe(&e)))?;
    let index = find(inside, &temporary)
        .await?
        .ok_or_else(|| anyhow!("the new macvlan {temporary} did not appear in the namespace"))?;
    let rename = LinkUnspec::new_with_index(index)
        .name(name.to_string())
        .build();
    if let Err(e) = inside.link().change(rename).execute().await {
        let _ = inside.link().del(index).execute().await;
        return Err(anyhow!(
            "renaming the new macvlan to {name}: {}",
            describe(&e)
        ));
    }
    Ok(index)
}

/// Sets the link up or down.
pub(crate) async fn set_up(handle: &Handle, index: u32, up: bool) -> anyhow::Result<()> {
    let builder = LinkUnspec::new_with_index(index);
    let message = if up { builder.up() } else { builder.down() }.build();
    handle.link().change(message).execute().await.map_err(|e| {
        anyhow!(
            "setting link {index} {}: {}",
            if up { "up" } else { "down" },
            describe(&e)
        )
    })
}

/// Adds `ip/prefix` to the link (IPv6 without duplicate address detection,
/// so it is usable at once).
pub(crate) async fn add_address(
    handle: &Handle,
    index: u32,
    ip: IpAddr,
    prefix: u8,
) -> anyhow::Result<()> {
    let mut request = handle.address().add(index, ip, prefix);
    if ip.is_ipv6() {
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    request
        .execute()
        .await
        .map_err(|e| anyhow!("adding {ip}/{prefix}: {}", describe(&e)))
}

/// Adds a default route of `gateway`'s family via `gateway` on the link.
pub(crate) async fn add_default_route(
    handle: &Handle,
    index: u32,
    gateway: IpAddr,
) -> anyhow::Result<()> {
    let any = match gateway {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let route = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(any, 0)
        .and_then(|b| b.gateway(gateway))
        .map_err(|e| anyhow!("default route via {gateway}: {e}"))?
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(|e| anyhow!("adding default route via {gateway}: {}", describe(&e)))
}

/// Removes every address of the link, then every route left through it
/// (all tables, both families). Things the kernel removed on its own in the
/// meantime are not errors.
pub async fn flush(handle: &Handle, index: u32) -> anyhow::Result<()> {
    let addresses: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| anyhow!("listing addresses of link {index}: {}", describe(&e)))?;
    for address in addresses {
        let shown = address_of(&address.attributes);
        if let Err(e) = handle.address().del(address).execute().await {
            if !matches!(errno(&e), Some(EADDRNOTAVAIL | ENOENT | ENODEV)) {
                return Err(anyhow!(
                    "removing address {shown} of link {index}: {}",
                    describe(&e)
                ));
            }
        }
    }
    for route in routes_through(handle, index).await? {
        if let Err(e) = handle.route().del(route.clone()).execute().await {
            if !matches!(errno(&e), Some(ESRCH | ENOENT | ENODEV)) {
                return Err(anyhow!(
                    "removing route to {} of link {index}: {}",
                    route_destination(&route),
                    describe(&e)
                ));
            }
        }
    }
    Ok(())
}

/// Every route, of any table and family, whose output is the link.
pub(crate) async fn routes_through(
    handle: &Handle,
    index: u32,
) -> anyhow::Result<Vec<RouteMessage>> {
    let mut found = Vec::new();
    for query in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let routes: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| anyhow!("listing routes: {}", describe(&e)))?;
        found.extend(
            routes
                .into_iter()
                .filter(|r| r.attributes.contains(&RouteAttribute::Oif(index))),
        );
    }
    Ok(found)
}

/// A route's destination as `address/length`, `default` when it has none.
fn route_destination(route: &RouteMessage) -> String {
    let length = route.header.destination_prefix_length;
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(format!("{ip}/{length}")),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(format!("{ip}/{length}")),
            _ => None,
        })
        .unwrap_or_else(|| "default".into())
}

fn address_of(attributes: &[AddressAttribute]) -> String {
    attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Address(ip) | AddressAttribute::Local(ip) => Some(ip.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}
