//! The steps of docs/tasks/public-ip-validation.md for the farm IPs, on the test link, inside the
//! namespace (called on the namespace thread, see `netns`): clear the link,
//! then for each IP add it, bring the link up, route via its gateway, ask
//! who we are, compare, and clear the link again.

use std::net::IpAddr;
use std::time::Instant;

use super::rtnl::Rtnl;
use anyhow::Context;

use super::config::LookupKind;
use super::link;
use super::lookup::{self, Lookup};
use super::stun;
use super::PublicIpConfig;
use super::{
    IpReport, Report, State, FETCH_REAL_IP_FAILED, IPS_NOT_MATCHING, IP_IS_USED,
    PUBLIC_IP_DATA_INVALID,
};
use crate::grid::graphql::PublicIp;

/// A farm IP parsed for use: address, prefix length, gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub ip: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
}

/// A farm IP whose data cannot be tested (the IP is reported invalid).
/// Each variant holds the farm's text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FarmIpError {
    #[error("ip {0:?} is not in CIDR form")]
    NotCidr(String),
    #[error("ip {0:?} is not an IP address")]
    Address(String),
    #[error("ip {0:?} has no valid prefix length")]
    Prefix(String),
    #[error("gateway {0:?} is not an IP address")]
    Gateway(String),
    #[error("ip {ip:?} and gateway {gateway:?} are of different families")]
    Families { ip: String, gateway: String },
}

/// Parses `ip` (CIDR, required) and `gateway` (a plain address of the same
/// family).
pub(crate) fn parse_farm_ip(ip: &str, gateway: &str) -> Result<Parsed, FarmIpError> {
    let (addr, prefix) = ip
        .trim()
        .split_once('/')
        .ok_or_else(|| FarmIpError::NotCidr(ip.to_string()))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| FarmIpError::Address(ip.to_string()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| FarmIpError::Prefix(ip.to_string()))?;
    let gw: IpAddr = gateway
        .trim()
        .parse()
        .map_err(|_| FarmIpError::Gateway(gateway.to_string()))?;
    if gw.is_ipv4() != addr.is_ipv4() {
        return Err(FarmIpError::Families {
            ip: ip.to_string(),
            gateway: gateway.to_string(),
        });
    }
    Ok(Parsed {
        ip: addr,
        prefix,
        gateway: gw,
    })
}

/// The steps of docs/tasks/public-ip-validation.md on the test link, inside the namespace: clear it,
/// check each IP, clear it again after each. (Setting it down at the end is
/// the namespace thread's guard's job, which runs on every path.)
pub(super) async fn check_all(
    handle: &Rtnl,
    index: u32,
    ips: &[PublicIp],
    settings: &PublicIpConfig,
    progress: &crate::tasks::Progress,
) -> anyhow::Result<Report> {
    link::flush(handle, index)
        .await
        .with_context(|| format!("removing what was left on link {}", settings.link))?;
    let mut report = Report::new();
    for (i, farm_ip) in ips.iter().enumerate() {
        progress.note(|| format!("IP {} of {}: {}", i + 1, ips.len(), farm_ip.ip));
        let started = Instant::now();
        let outcome = check_one(handle, index, farm_ip, settings).await;
        // Always, even when the check failed half-way.
        let cleared = link::flush(handle, index)
            .await
            .with_context(|| format!("removing {} from link {}", farm_ip.ip, settings.link));
        let outcome = outcome?;
        cleared?;
        tracing::info!(
            ip = farm_ip.ip,
            state = ?outcome.state,
            reason = outcome.reason,
            took = ?started.elapsed(),
            "checked"
        );
        report.insert(farm_ip.ip.clone(), outcome);
    }
    Ok(report)
}

/// One farm IP. An `Err` is a failure of the machine, not of the IP, and
/// ends the run.
async fn check_one(
    handle: &Rtnl,
    index: u32,
    farm_ip: &PublicIp,
    settings: &PublicIpConfig,
) -> anyhow::Result<IpReport> {
    let invalid_data = |why: String| {
        tracing::warn!(ip = farm_ip.ip, gateway = farm_ip.gateway, "{why}");
        Ok(IpReport::new(State::Invalid, PUBLIC_IP_DATA_INVALID))
    };
    if farm_ip.contract_id != 0 {
        return Ok(IpReport::new(State::Skipped, IP_IS_USED));
    }
    let p = match parse_farm_ip(&farm_ip.ip, &farm_ip.gateway) {
        Ok(p) => p,
        Err(why) => return invalid_data(why.to_string()),
    };
    if let Err(e) = link::add_address(handle, index, p.ip, p.prefix).await {
        return invalid_data(format!("{e:#}"));
    }
    link::set_up(handle, index, true).await?;
    if let Err(e) = link::add_default_route(handle, index, p.gateway).await {
        return invalid_data(format!("{e:#}"));
    }
    let seen = match settings.lookup {
        LookupKind::Http => {
            lookup::public_ip(&settings.lookup_url, p.ip, settings.lookup_timeout).await?
        }
        LookupKind::Stun => {
            stun::public_ip(&settings.stun_servers, p.ip, settings.stun_timeout).await
        }
    };
    Ok(match seen {
        Lookup::Answer(seen) if seen == p.ip => IpReport::new(State::Valid, ""),
        Lookup::Answer(seen) => {
            tracing::warn!(ip = farm_ip.ip, %seen, "the lookup service sees another address");
            IpReport::new(State::Invalid, IPS_NOT_MATCHING)
        }
        Lookup::Unreachable(why) => {
            return invalid_data(format!(
                "{} lookup unreachable via gateway {}: {why}",
                lookup_name(settings),
                p.gateway
            ))
        }
        Lookup::Failed(why) => {
            tracing::warn!(
                ip = farm_ip.ip,
                url = settings.lookup_url,
                "lookup failed: {why}"
            );
            IpReport::new(State::Skipped, FETCH_REAL_IP_FAILED)
        }
    })
}

/// The lookup as logs name it.
fn lookup_name(settings: &PublicIpConfig) -> String {
    match settings.lookup {
        LookupKind::Http => format!("HTTP ({})", settings.lookup_url),
        LookupKind::Stun => format!("STUN ({})", settings.stun_servers.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn farm_ips_parse_in_cidr_form_with_a_gateway_of_the_same_family() {
        let p = parse_farm_ip("185.206.122.29/24", "185.206.122.1").expect("parse");
        assert_eq!(p.ip, "185.206.122.29".parse::<IpAddr>().expect("ip"));
        assert_eq!(p.prefix, 24);
        assert!(parse_farm_ip("2001:db8::5/64", "2001:db8::1").is_ok());
    }

    #[test]
    fn bad_farm_data_is_refused_with_what_is_wrong() {
        for (ip, gw) in [
            ("185.206.122.29", "185.206.122.1"),
            ("185.206.122.300/24", "185.206.122.1"),
            ("185.206.122.29/33", "185.206.122.1"),
            ("185.206.122.29/x", "185.206.122.1"),
            ("185.206.122.29/24", "gateway"),
            ("185.206.122.29/24", ""),
            ("185.206.122.29/24", "2001:db8::1"),
        ] {
            let err = parse_farm_ip(ip, gw).expect_err(ip).to_string();
            assert!(err.contains("ip") || err.contains("gateway"), "{err}");
        }
    }
}
