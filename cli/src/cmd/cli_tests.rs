use super::*;
use crate::cmd::create::build_spec;

fn parse(args: &[&str]) -> Cli {
    let mut v = vec!["berth"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).unwrap()
}

#[test]
fn run_flags_become_a_spec() {
    let cli = parse(&[
        "run",
        "-d",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1::443/udp",
        "-v",
        "/srv:/www:ro",
        "-v",
        "data:/data",
        "-e",
        "A=1",
        "--name",
        "web",
        "--restart",
        "on-failure:3",
        "-m",
        "512m",
        "--cpus",
        "1.5",
        "--pids-limit",
        "100",
        "-h",
        "box",
        "--network",
        "host",
        "--cap-add",
        "NET_ADMIN",
        "--read-only",
        "--init",
        "-l",
        "tier=front",
        "-w",
        "/www",
        "-u",
        "1000:1000",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    let Command::Run(a) = cli.command else {
        panic!("not run")
    };
    assert!(a.detach);
    assert_eq!(a.image, "busybox");
    assert_eq!(a.command, vec!["httpd", "-f", "-p", "80"]);
    let s = build_spec(&a.opts, &a.image, &a.command, false).unwrap();
    assert_eq!(s.name, "web");
    assert_eq!(s.ports.len(), 2);
    assert_eq!(
        (s.ports[0].host_port, s.ports[0].container_port),
        (8080, 80)
    );
    assert_eq!(
        (s.ports[1].host_ip.as_str(), s.ports[1].protocol.as_str()),
        ("127.0.0.1", "udp")
    );
    assert_eq!(s.mounts[0].kind, "bind");
    assert!(s.mounts[0].read_only);
    assert_eq!(s.mounts[1].kind, "volume");
    assert_eq!(s.env, vec!["A=1"]);
    assert_eq!(s.restart.as_ref().unwrap().maximum_retry_count, 3);
    assert_eq!(s.memory_limit, 512 << 20);
    assert_eq!(s.nano_cpus, 1_500_000_000);
    assert_eq!(s.pids_limit, 100);
    assert_eq!(s.hostname, "box");
    assert_eq!(s.network, "host");
    assert!(s.read_only_rootfs && s.init);
    assert_eq!(s.labels["tier"], "front");
    assert_eq!(s.working_dir, "/www");
    assert_eq!(s.user, "1000:1000");
}

#[test]
fn it_rm_and_entrypoint() {
    let cli = parse(&["run", "-it", "--rm", "--entrypoint", "", "busybox"]);
    let Command::Run(a) = cli.command else {
        panic!("not run")
    };
    assert!(a.opts.interactive && a.opts.tty && a.rm);
    let s = build_spec(&a.opts, &a.image, &a.command, false).unwrap();
    assert!(s.entrypoint_set && s.entrypoint.is_empty());
    assert!(s.open_stdin && s.stdin_once && s.tty);
    assert!(!s.auto_remove);
}

#[test]
fn bad_values_are_usage_errors() {
    for args in [
        &["run", "-p", "99999:80", "busybox"][..],
        &["run", "--restart", "sometimes", "busybox"],
        &["run", "-m", "lots", "busybox"],
        &["run", "--cpus", "-2", "busybox"],
        &["run", "--network", "overlay", "busybox"],
        &["run", "--rm", "--restart", "always", "busybox"],
    ] {
        let cli = parse(args);
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        let e = build_spec(&a.opts, &a.image, &a.command, a.rm).unwrap_err();
        assert!(matches!(e, CliError::Usage(_)), "{args:?}");
    }
}

#[test]
fn unknown_flags_are_rejected_by_clap() {
    assert!(Cli::try_parse_from(["berth", "run", "--bogus", "busybox"]).is_err());
    assert!(Cli::try_parse_from(["berth", "ps", "--bogus"]).is_err());
}

#[test]
fn host_flag_and_aliases() {
    let cli = parse(&["-H", "unix:///tmp/x.sock", "image", "ls", "-q"]);
    assert_eq!(cli.host, "unix:///tmp/x.sock");
    assert!(matches!(
        cli.command,
        Command::Image {
            cmd: ImageCmd::Ls(_)
        }
    ));
    let cli = parse(&["container", "ls", "-a"]);
    assert!(matches!(
        cli.command,
        Command::Container {
            cmd: ContainerCmd::Ls(_)
        }
    ));
    let cli = parse(&["volume", "create", "data"]);
    assert!(matches!(cli.command, Command::Volume { .. }));
    let cli = parse(&["system", "prune", "-a", "--volumes", "-f"]);
    assert!(matches!(cli.command, Command::System { .. }));
}

#[test]
fn exec_and_logs_flags() {
    let cli = parse(&["exec", "-it", "-e", "X=1", "web", "sh", "-c", "echo hi"]);
    let Command::Exec(a) = cli.command else {
        panic!("not exec")
    };
    assert!(a.interactive && a.tty);
    assert_eq!(a.command, vec!["sh", "-c", "echo hi"]);
    let cli = parse(&["logs", "-f", "--tail", "10", "-t", "--since", "10m", "web"]);
    let Command::Logs(a) = cli.command else {
        panic!("not logs")
    };
    assert!(a.follow && a.timestamps);
    assert_eq!(a.tail, "10");
}
