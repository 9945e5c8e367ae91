//! Can this process bind ports below 1024? (pure parsing, thin file reading)
//!
//! Linux lets a process bind a port below `net.ipv4.ip_unprivileged_port_start` (default
//! 1024; it applies to IPv6 too, despite its name, and is per network namespace) only
//! with `CAP_NET_BIND_SERVICE` in its effective set. Root normally has it; root in a
//! container with dropped capabilities does not, so the capability is what is checked,
//! not the uid.

/// Bit of `CAP_NET_BIND_SERVICE` in the capability sets (linux/capability.h).
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The sysctl file.
const PORT_START_FILE: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

/// Where `CapEff` is.
const STATUS_FILE: &str = "/proc/self/status";

/// Returns how to fix it when binding `port` would fail for lack of privilege, or `None`
/// when it would work (or when this is not Linux and nothing can be told).
///
/// Reads `/proc/sys/net/ipv4/ip_unprivileged_port_start` and `/proc/self/status`; the
/// decision is [`privileged_ports_check`].
pub fn privileged_ports_blocked(port: u16) -> Option<String> {
    let start = std::fs::read_to_string(PORT_START_FILE);
    let status = std::fs::read_to_string(STATUS_FILE);
    if start.is_err() && status.is_err() {
        // Not Linux (or no /proc): nothing to tell; a bind failure will say it instead.
        return None;
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "svcnet".to_string());
    privileged_ports_check(port, start.ok().as_deref(), status.ok().as_deref(), &exe)
}

/// The decision of [`privileged_ports_blocked`] over the two files' contents (`None` when
/// a file could not be read). Without the sysctl file the kernel predates it (Linux 4.11)
/// and the start is 1024; without the status file the capability is taken as absent.
/// `exe` names the binary in the `setcap` alternative.
pub fn privileged_ports_check(
    port: u16,
    port_start_file: Option<&str>,
    status_file: Option<&str>,
    exe: &str,
) -> Option<String> {
    let start = port_start_file
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    if u32::from(port) >= start {
        return None;
    }
    if status_file
        .and_then(effective_capabilities)
        .is_some_and(|caps| caps & (1 << CAP_NET_BIND_SERVICE) != 0)
    {
        return None;
    }
    Some(format!(
        "binding port {port} needs CAP_NET_BIND_SERVICE (unprivileged ports start at {start}); fix with:\n  \
         sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0\n\
         or give the binary the capability:\n  \
         sudo setcap cap_net_bind_service=+ep {exe}"
    ))
}

/// Parses the `CapEff:` line of `/proc/PID/status` (64 bits in hex).
pub fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "Name:\tsvcnet\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n";
    const ROOT: &str = "Name:\tsvcnet\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
    const ROOT_DROPPED: &str = "Uid:\t0\t0\t0\t0\nCapEff:\t00000000a80425fb\n";
    const SETCAP: &str = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000400\n";

    #[test]
    fn parses_cap_eff() {
        assert_eq!(effective_capabilities(USER), Some(0));
        assert_eq!(effective_capabilities(ROOT), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name: x\n"), None);
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
    }

    #[test]
    fn high_ports_never_blocked() {
        assert_eq!(
            privileged_ports_check(1024, Some("1024\n"), Some(USER), "svcnet"),
            None
        );
        assert_eq!(privileged_ports_check(8080, None, None, "svcnet"), None);
    }

    #[test]
    fn low_port_as_user_is_blocked_with_the_fix() {
        let fix = privileged_ports_check(80, Some("1024\n"), Some(USER), "/usr/bin/svcnet");
        let fix = fix.unwrap_or_default();
        assert!(
            fix.contains("sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0"),
            "{fix}"
        );
        assert!(
            fix.contains("sudo setcap cap_net_bind_service=+ep /usr/bin/svcnet"),
            "{fix}"
        );
        assert!(fix.contains("port 80"), "{fix}");
    }

    #[test]
    fn sysctl_lowered_allows() {
        assert_eq!(
            privileged_ports_check(80, Some("0\n"), Some(USER), "svcnet"),
            None
        );
        assert_eq!(
            privileged_ports_check(80, Some("80"), Some(USER), "svcnet"),
            None
        );
        assert!(privileged_ports_check(79, Some("80"), Some(USER), "svcnet").is_some());
    }

    #[test]
    fn capability_allows() {
        assert_eq!(
            privileged_ports_check(80, Some("1024"), Some(ROOT), "svcnet"),
            None
        );
        assert_eq!(
            privileged_ports_check(80, Some("1024"), Some(SETCAP), "svcnet"),
            None
        );
        // Docker's default set keeps bit 10, so root in a default container is fine.
        assert_eq!(
            privileged_ports_check(80, Some("1024"), Some(ROOT_DROPPED), "svcnet"),
            None
        );
        let no_bind = "Uid:\t0\t0\t0\t0\nCapEff:\t00000000a80421fb\n";
        assert!(privileged_ports_check(80, Some("1024"), Some(no_bind), "svcnet").is_some());
    }

    #[test]
    fn unreadable_files_assume_defaults() {
        assert!(privileged_ports_check(443, None, None, "svcnet").is_some());
        assert!(privileged_ports_check(443, Some("garbage"), Some(USER), "svcnet").is_some());
    }
}
