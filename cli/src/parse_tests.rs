use super::*;

fn pm(ip: &str, h: u32, c: u32, p: &str) -> PortMapping {
    PortMapping {
        host_ip: ip.into(),
        host_port: h,
        container_port: c,
        protocol: p.into(),
    }
}

#[test]
fn port_forms() {
    assert_eq!(parse_port("80").unwrap(), vec![pm("", 0, 80, "tcp")]);
    assert_eq!(
        parse_port("8080:80").unwrap(),
        vec![pm("", 8080, 80, "tcp")]
    );
    assert_eq!(
        parse_port("127.0.0.1:8080:80").unwrap(),
        vec![pm("127.0.0.1", 8080, 80, "tcp")]
    );
    assert_eq!(
        parse_port("127.0.0.1::80").unwrap(),
        vec![pm("127.0.0.1", 0, 80, "tcp")]
    );
    assert_eq!(
        parse_port("53:53/udp").unwrap(),
        vec![pm("", 53, 53, "udp")]
    );
    assert_eq!(
        parse_port("[::1]:8080:80").unwrap(),
        vec![pm("::1", 8080, 80, "tcp")]
    );
    assert_eq!(
        parse_port("8000-8001:80-81").unwrap(),
        vec![pm("", 8000, 80, "tcp"), pm("", 8001, 81, "tcp")]
    );
    for bad in [
        "",
        "x",
        "0:80",
        "8080:70000",
        "1.2.3:80:80",
        "80/icmp",
        "9-8:1",
        "8000-8002:80-81",
        "a:b:c:d",
    ] {
        assert!(parse_port(bad).is_err(), "{bad} should fail");
    }
}

#[test]
fn volume_forms() {
    let cwd = Path::new("/home/u/proj");
    let m = parse_volume("/srv/www:/www:ro", cwd).unwrap();
    assert_eq!(
        (
            m.source.as_str(),
            m.destination.as_str(),
            m.read_only,
            m.kind.as_str()
        ),
        ("/srv/www", "/www", true, "bind")
    );
    let m = parse_volume("data:/var/lib/data", cwd).unwrap();
    assert_eq!(
        (m.source.as_str(), m.kind.as_str(), m.read_only),
        ("data", "volume", false)
    );
    let m = parse_volume("/cache", cwd).unwrap();
    assert_eq!(
        (m.source.as_str(), m.destination.as_str(), m.kind.as_str()),
        ("", "/cache", "volume")
    );
    let m = parse_volume("./site/../www:/www:rw", cwd).unwrap();
    assert_eq!(m.source, "/home/u/proj/www");
    assert_eq!(m.kind, "bind");
    let m = parse_volume("/data:ro", cwd).unwrap();
    assert_eq!((m.destination.as_str(), m.read_only), ("/data", true));
    for bad in ["r:/x", "/a:b", "/a:/b:xx", "a b:/x", "/a:/b:ro:z", "/h:/"] {
        assert!(parse_volume(bad, cwd).is_err(), "{bad} should fail");
    }
}

#[test]
fn restart_forms() {
    assert_eq!(parse_restart("no").unwrap().name, "no");
    assert_eq!(parse_restart("always").unwrap().name, "always");
    assert_eq!(
        parse_restart("unless-stopped").unwrap().name,
        "unless-stopped"
    );
    let p = parse_restart("on-failure:3").unwrap();
    assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
    assert_eq!(parse_restart("on-failure").unwrap().maximum_retry_count, 0);
    for bad in ["sometimes", "always:3", "on-failure:x", "on-failure:-1"] {
        assert!(parse_restart(bad).is_err(), "{bad} should fail");
    }
}

#[test]
fn memory_suffixes() {
    assert_eq!(parse_memory("1024").unwrap(), 1024);
    assert_eq!(parse_memory("100k").unwrap(), 100 * 1024);
    assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
    assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
    assert_eq!(parse_memory("512mb").unwrap(), 512 << 20);
    assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
    assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
    for bad in ["", "m", "12x", "-5m", "1.2.3m", "5mbb"] {
        assert!(parse_memory(bad).is_err(), "{bad} should fail");
    }
}

#[test]
fn cpus() {
    assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
    assert_eq!(parse_cpus("0.25").unwrap(), 250_000_000);
    assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
    assert!(parse_cpus("-1").is_err());
    assert!(parse_cpus("lots").is_err());
}

#[test]
fn env_and_env_file() {
    let lookup = |k: &str| (k == "HOME_X").then(|| "/root".to_owned());
    assert_eq!(env_entry("A=b", &lookup).as_deref(), Some("A=b"));
    assert_eq!(
        env_entry("HOME_X", &lookup).as_deref(),
        Some("HOME_X=/root")
    );
    assert_eq!(env_entry("UNSET", &lookup), None);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("env");
    std::fs::write(&f, "# comment\n\nA=1\n  B=two words\nHOME_X\nUNSET\n").unwrap();
    assert_eq!(
        parse_env_file(&f, &lookup).unwrap(),
        vec!["A=1", "B=two words", "HOME_X=/root"]
    );
    assert!(parse_env_file(&dir.path().join("none"), &lookup).is_err());
}

#[test]
fn times_and_durations() {
    let now = 1_700_000_000_000_000_000i64;
    assert_eq!(parse_time("10m", now).unwrap(), now - 600_000_000_000);
    assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000_000_000);
    assert_eq!(parse_time("2023-11-14T22:13:20Z", now).unwrap(), now);
    assert_eq!(parse_time("1700000000", now).unwrap(), now);
    assert_eq!(parse_time("1700000000.5", now).unwrap(), now + 500_000_000);
    assert!(parse_time("yesterday", now).is_err());
    assert!(parse_time("10x", now).is_err());
}

#[test]
fn key_values() {
    assert_eq!(
        key_value("label", "a=b=c").unwrap(),
        ("a".into(), "b=c".into())
    );
    assert_eq!(
        key_value("label", "flag").unwrap(),
        ("flag".into(), String::new())
    );
    assert!(key_value("label", "=x").is_err());
}
