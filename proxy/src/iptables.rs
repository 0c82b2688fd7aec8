//! `ferry-proxy init-iptables`: the traffic interception App Mesh's init container sets up, with
//! its chain names and environment variables, so an unmodified app's traffic reaches the proxy.
//!
//! Egress: `nat OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j APPMESH_EGRESS`, where the chain
//! returns for the proxy's own UID/GID, ignored ports (22 always) and ignored IPs, and redirects
//! the rest to the egress port. Ingress: `nat PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j
//! APPMESH_INGRESS`, redirecting the app ports to the ingress port. `--clean` removes all of it;
//! applying twice gives the same rules (the old ones are removed first).
use std::process::Command;

#[derive(clap::Args, Debug, Clone)]
pub struct InterceptArgs {
    /// Traffic of this UID is never redirected (the proxy's own).
    #[arg(long, env = "APPMESH_IGNORE_UID")]
    pub ignore_uid: Option<u32>,
    /// Traffic of this GID is never redirected.
    #[arg(long, env = "APPMESH_IGNORE_GID")]
    pub ignore_gid: Option<u32>,
    /// The app's ports: inbound traffic to them goes through the ingress listener.
    #[arg(long, env = "APPMESH_APP_PORTS", value_delimiter = ',')]
    pub app_ports: Vec<u16>,
    /// Destination addresses (or CIDRs) whose traffic is not redirected.
    #[arg(
        long = "egress-ignored-ip",
        env = "APPMESH_EGRESS_IGNORED_IP",
        value_delimiter = ','
    )]
    pub egress_ignored_ips: Vec<String>,
    /// Destination ports whose traffic is not redirected (22 is always added).
    #[arg(
        long = "egress-ignored-ports",
        env = "APPMESH_EGRESS_IGNORED_PORTS",
        value_delimiter = ','
    )]
    pub egress_ignored_ports: Vec<u16>,
    #[arg(long, env = "APPMESH_ENVOY_INGRESS_PORT", default_value_t = 15000)]
    pub ingress_port: u16,
    #[arg(long, env = "APPMESH_ENVOY_EGRESS_PORT", default_value_t = 15001)]
    pub egress_port: u16,
    /// Mirror the rules with ip6tables.
    #[arg(long, env = "APPMESH_ENABLE_IPV6", value_parser = parse_flag, default_value = "0")]
    pub enable_ipv6: bool,
    /// Remove the rules instead of writing them.
    #[arg(long)]
    pub clean: bool,
    /// Print the commands without running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// App Mesh's env flags are "1"/"0" (also accepts true/false).
fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        other => Err(format!("{other:?} is not 0 or 1")),
    }
}

const EGRESS: &str = "APPMESH_EGRESS";
const INGRESS: &str = "APPMESH_INGRESS";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The commands (arguments of iptables) that remove Ferry's rules; failures are expected when
/// there is nothing to remove.
pub fn clean_rules() -> Vec<Vec<String>> {
    vec![
        args(&[
            "-t",
            "nat",
            "-D",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "!",
            "--dst-type",
            "LOCAL",
            "-j",
            EGRESS,
        ]),
        args(&[
            "-t",
            "nat",
            "-D",
            "PREROUTING",
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "!",
            "--src-type",
            "LOCAL",
            "-j",
            INGRESS,
        ]),
        args(&["-t", "nat", "-F", EGRESS]),
        args(&["-t", "nat", "-X", EGRESS]),
        args(&["-t", "nat", "-F", INGRESS]),
        args(&["-t", "nat", "-X", INGRESS]),
    ]
}

/// The commands that write the rules, for one address family (`v6`: only IPv6 ignored IPs).
pub fn apply_rules(a: &InterceptArgs, v6: bool) -> Vec<Vec<String>> {
    let mut out = vec![args(&["-t", "nat", "-N", EGRESS])];
    if let Some(uid) = a.ignore_uid {
        out.push(args(&[
            "-t",
            "nat",
            "-A",
            EGRESS,
            "-m",
            "owner",
            "--uid-owner",
            &uid.to_string(),
            "-j",
            "RETURN",
        ]));
    }
    if let Some(gid) = a.ignore_gid {
        out.push(args(&[
            "-t",
            "nat",
            "-A",
            EGRESS,
            "-m",
            "owner",
            "--gid-owner",
            &gid.to_string(),
            "-j",
            "RETURN",
        ]));
    }
    let mut ports: Vec<u16> = vec![22];
    ports.extend(a.egress_ignored_ports.iter().copied().filter(|p| *p != 22));
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    out.push(args(&[
        "-t",
        "nat",
        "-A",
        EGRESS,
        "-p",
        "tcp",
        "-m",
        "multiport",
        "--dports",
        &ports,
        "-j",
        "RETURN",
    ]));
    for ip in a
        .egress_ignored_ips
        .iter()
        .filter(|ip| ip.contains(':') == v6)
    {
        out.push(args(&[
            "-t", "nat", "-A", EGRESS, "-p", "tcp", "-d", ip, "-j", "RETURN",
        ]));
    }
    out.push(args(&[
        "-t",
        "nat",
        "-A",
        EGRESS,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-port",
        &a.egress_port.to_string(),
    ]));
    out.push(args(&[
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-m",
        "addrtype",
        "!",
        "--dst-type",
        "LOCAL",
        "-j",
        EGRESS,
    ]));
    if !a.app_ports.is_empty() {
        let app = a
            .app_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        out.push(args(&["-t", "nat", "-N", INGRESS]));
        out.push(args(&[
            "-t",
            "nat",
            "-A",
            INGRESS,
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--dports",
            &app,
            "-j",
            "REDIRECT",
            "--to-port",
            &a.ingress_port.to_string(),
        ]));
        out.push(args(&[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "!",
            "--src-type",
            "LOCAL",
            "-j",
            INGRESS,
        ]));
    }
    out
}

/// Runs `init-iptables`: removes any previous rules, then (unless `--clean`) writes them.
pub fn run(a: &InterceptArgs) -> anyhow::Result<()> {
    let families: &[(&str, bool)] = if a.enable_ipv6 {
        &[("iptables", false), ("ip6tables", true)]
    } else {
        &[("iptables", false)]
    };
    for (tool, v6) in families {
        for cmd in clean_rules() {
            execute(tool, &cmd, a.dry_run, true)?;
        }
        if !a.clean {
            for cmd in apply_rules(a, *v6) {
                execute(tool, &cmd, a.dry_run, false)?;
            }
        }
    }
    Ok(())
}

fn execute(tool: &str, cmd: &[String], dry_run: bool, may_fail: bool) -> anyhow::Result<()> {
    if dry_run {
        println!("{tool} {}", cmd.join(" "));
        return Ok(());
    }
    let out = Command::new(tool).args(cmd).output().map_err(|e| {
        anyhow::anyhow!("cannot run {tool} (is it installed, and do we have NET_ADMIN?): {e}")
    })?;
    if !out.status.success() && !may_fail {
        anyhow::bail!(
            "{tool} {} failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> InterceptArgs {
        InterceptArgs {
            ignore_uid: Some(1337),
            ignore_gid: None,
            app_ports: vec![8080, 9090],
            egress_ignored_ips: vec!["169.254.169.254".into(), "fd00::1".into()],
            egress_ignored_ports: vec![5432],
            ingress_port: 15000,
            egress_port: 15001,
            enable_ipv6: false,
            clean: false,
            dry_run: true,
        }
    }

    #[test]
    fn app_mesh_rules() {
        let rules: Vec<String> = apply_rules(&a(), false)
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert!(
            rules.contains(
                &"-t nat -A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN".to_owned()
            )
        );
        assert!(rules.contains(
            &"-t nat -A APPMESH_EGRESS -p tcp -m multiport --dports 22,5432 -j RETURN".to_owned()
        ));
        assert!(
            rules.contains(
                &"-t nat -A APPMESH_EGRESS -p tcp -d 169.254.169.254 -j RETURN".to_owned()
            )
        );
        assert!(
            !rules.iter().any(|r| r.contains("fd00::1")),
            "IPv6 addresses only in ip6tables"
        );
        assert!(
            rules.contains(
                &"-t nat -A APPMESH_EGRESS -p tcp -j REDIRECT --to-port 15001".to_owned()
            )
        );
        assert!(rules.contains(&"-t nat -A APPMESH_INGRESS -p tcp -m multiport --dports 8080,9090 -j REDIRECT --to-port 15000".to_owned()));
        assert!(
            rules.contains(
                &"-t nat -A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j APPMESH_INGRESS"
                    .to_owned()
            )
        );
        let v6: Vec<String> = apply_rules(&a(), true)
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert!(v6.iter().any(|r| r.contains("fd00::1")));
    }

    #[test]
    fn env_flags() {
        assert_eq!(parse_flag("1"), Ok(true));
        assert_eq!(parse_flag("0"), Ok(false));
        assert!(parse_flag("maybe").is_err());
    }
}
