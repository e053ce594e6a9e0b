//! Netlink operations on the test link.
//!
//! Every function takes an [`Rtnl`] socket opened in the namespace the
//! operation is meant for: a netlink socket stays in the namespace it was
//! created in, whatever thread uses it later. The messages are made by
//! rtnetlink's builders and sent through [`super::rtnl`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, Context};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::MacVlanMode;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{AddressMessageBuilder, LinkMacVlan, LinkUnspec, RouteMessageBuilder};

use super::rtnl::{Answer, Request, Rtnl};

/// errno values the kernel answers with for "no such thing".
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;

/// Opens a netlink socket in the calling thread's current namespace, driven
/// by the current runtime.
pub fn connect() -> anyhow::Result<Rtnl> {
    Rtnl::open().context("opening a netlink route socket")
}

/// The index of the link called `name`, or `None` if there is none.
pub async fn find(handle: &Rtnl, name: &str) -> anyhow::Result<Option<u32>> {
    match handle.get(Request::link_named(name)).await {
        Ok(answers) => Ok(answers.iter().find_map(|a| match a {
            Answer::Link(header) => Some(header.index),
            _ => None,
        })),
        Err(e) if e.errno() == Some(ENODEV) => Ok(None),
        Err(e) => Err(anyhow!("looking up link {name}: {e}")),
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
    root: &Rtnl,
    inside: &Rtnl,
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
    root.ack(Request::NewLink(message), NLM_F_CREATE | NLM_F_EXCL)
        .await
        .map_err(|e| anyhow!("creating macvlan over {parent}: {e}"))?;
    let index = find(inside, &temporary)
        .await?
        .ok_or_else(|| anyhow!("the new macvlan {temporary} did not appear in the namespace"))?;
    let rename = LinkUnspec::new_with_index(index)
        .name(name.to_string())
        .build();
    if let Err(e) = inside.ack(Request::SetLink(rename), 0).await {
        let doomed = LinkUnspec::new_with_index(index).build();
        let _ = inside.ack(Request::DelLink(doomed), 0).await;
        return Err(anyhow!("renaming the new macvlan to {name}: {e}"));
    }
    Ok(index)
}

/// Sets the link up or down.
pub(crate) async fn set_up(handle: &Rtnl, index: u32, up: bool) -> anyhow::Result<()> {
    let builder = LinkUnspec::new_with_index(index);
    let message = if up { builder.up() } else { builder.down() }.build();
    handle
        .ack(Request::SetLink(message), 0)
        .await
        .map(drop)
        .map_err(|e| {
            anyhow!(
                "setting link {index} {}: {e}",
                if up { "up" } else { "down" }
            )
        })
}

/// Adds `ip/prefix` to the link (IPv6 without duplicate address detection,
/// so it is usable at once).
pub(crate) async fn add_address(
    handle: &Rtnl,
    index: u32,
    ip: IpAddr,
    prefix: u8,
) -> anyhow::Result<()> {
    let mut message: AddressMessage = match ip {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(v4, prefix)
            .build(),
        IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(v6, prefix)
            .build(),
    };
    if ip.is_ipv6() {
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    handle
        .ack(Request::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL)
        .await
        .map(drop)
        .map_err(|e| anyhow!("adding {ip}/{prefix}: {e}"))
}

/// Adds a default route of `gateway`'s family via `gateway` on the link.
pub(crate) async fn add_default_route(
    handle: &Rtnl,
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
        .ack(Request::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL)
        .await
        .map(drop)
        .map_err(|e| anyhow!("adding default route via {gateway}: {e}"))
}

/// Removes every address of the link, then every route left through it
/// (all tables, both families). Things the kernel removed on its own in the
/// meantime are not errors.
pub async fn flush(handle: &Rtnl, index: u32) -> anyhow::Result<()> {
    let addresses: Vec<AddressMessage> = handle
        .dump(Request::GetAddress(AddressMessage::default()))
        .await
        .map_err(|e| anyhow!("listing addresses of link {index}: {e}"))?
        .into_iter()
        .filter_map(|a| match a {
            Answer::Address(m) if m.header.index == index => Some(m),
            _ => None,
        })
        .collect();
    for address in addresses {
        let shown = address_of(&address.attributes);
        if let Err(e) = handle.ack(Request::DelAddress(address), 0).await {
            if !matches!(e.errno(), Some(EADDRNOTAVAIL | ENOENT | ENODEV)) {
                return Err(anyhow!("removing address {shown} of link {index}: {e}"));
            }
        }
    }
    for route in routes_through(handle, index).await? {
        let shown = route_destination(&route);
        if let Err(e) = handle.ack(Request::DelRoute(route), 0).await {
            if !matches!(e.errno(), Some(ESRCH | ENOENT | ENODEV)) {
                return Err(anyhow!("removing route to {shown} of link {index}: {e}"));
            }
        }
    }
    Ok(())
}

/// Every route, of any table and family, whose output is the link.
pub(crate) async fn routes_through(handle: &Rtnl, index: u32) -> anyhow::Result<Vec<RouteMessage>> {
    let mut found = Vec::new();
    for query in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let routes = handle
            .dump(Request::GetRoute(query))
            .await
            .map_err(|e| anyhow!("listing routes: {e}"))?;
        found.extend(routes.into_iter().filter_map(|a| match a {
            Answer::Route(r) if r.attributes.contains(&RouteAttribute::Oif(index)) => Some(r),
            _ => None,
        }));
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
