use super::*;

fn p(dir: &str, root: Option<&str>) -> Placement {
    Placement {
        dir: dir.into(),
        root_name: root.map(Into::into),
    }
}

#[test]
fn sides() {
    assert_eq!(
        parse_side("web:/www/"),
        Side::Container {
            container: "web".into(),
            path: "/www/".into()
        }
    );
    assert_eq!(parse_side("./a:b"), Side::Local("./a:b".into()));
    assert_eq!(parse_side("/tmp/x"), Side::Local("/tmp/x".into()));
    assert_eq!(parse_side("-"), Side::Local("-".into()));
    assert_eq!(parse_side("file.txt"), Side::Local("file.txt".into()));
}

#[test]
fn file_into_existing_dir_keeps_its_name() {
    assert_eq!(
        plan("index.html", false, "/www/", DestKind::Dir).unwrap(),
        p("/www/", Some("index.html"))
    );
}

#[test]
fn file_to_new_or_existing_file_takes_dest_name() {
    assert_eq!(
        plan("a.txt", false, "/etc/b.txt", DestKind::Missing).unwrap(),
        p("/etc", Some("b.txt"))
    );
    assert_eq!(
        plan("a.txt", false, "/etc/b.txt", DestKind::File).unwrap(),
        p("/etc", Some("b.txt"))
    );
    assert!(matches!(
        plan("a.txt", false, "/nodir/", DestKind::Missing),
        Err(CpError::NoDestDir(_))
    ));
}

#[test]
fn directories_and_trailing_dot() {
    assert_eq!(
        plan("site", true, "/www", DestKind::Dir).unwrap(),
        p("/www", Some("site"))
    );
    assert_eq!(
        plan("site/.", true, "/www", DestKind::Dir).unwrap(),
        p("/www", None)
    );
    assert_eq!(
        plan("site", true, "/new", DestKind::Missing).unwrap(),
        p("/", Some("new"))
    );
    assert_eq!(
        plan("site/.", true, "/data/new", DestKind::Missing).unwrap(),
        p("/data", Some("new"))
    );
    assert!(matches!(
        plan("site", true, "/etc/passwd", DestKind::File),
        Err(CpError::DirToFile(_))
    ));
    assert!(matches!(
        plan("f/.", false, "/x", DestKind::Dir),
        Err(CpError::NotADir(_))
    ));
}

#[test]
fn tar_round_trip_with_rename_and_contents() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("site");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("index.html"), "hi").unwrap();
    std::fs::write(src.join("sub/x"), "x").unwrap();
    std::os::unix::fs::symlink("index.html", src.join("link")).unwrap();

    let tar = build_tar(&src, Some("site"), Vec::new()).unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    extract_tar(tar.as_slice(), &out, Some("renamed")).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("renamed/index.html")).unwrap(),
        "hi"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("renamed/sub/x")).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_link(out.join("renamed/link")).unwrap(),
        Path::new("index.html")
    );

    let contents = d.path().join("contents");
    std::fs::create_dir(&contents).unwrap();
    extract_tar(tar.as_slice(), &contents, None).unwrap();
    assert!(contents.join("index.html").exists());
    assert!(contents.join("sub/x").exists());

    // Without a root, the directory's entries are the archive's top level.
    let tar = build_tar(&src, None, Vec::new()).unwrap();
    let mut names: Vec<String> = tar::Archive::new(tar.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert!(names.contains(&"index.html".to_owned()), "{names:?}");
    assert!(names.contains(&"sub/x".to_owned()), "{names:?}");
}

fn raw_tar(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // set_path refuses `..`; write the raw name like a hostile tool.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_archives_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let t = raw_tar(&[("root/../../evil", tar::EntryType::Regular, None, b"x")]);
    assert!(matches!(
        extract_tar(t.as_slice(), &out, Some("root")),
        Err(CpError::UnsafeEntry(_))
    ));
    assert!(!d.path().join("evil").exists());

    let t = raw_tar(&[("/etc/evil", tar::EntryType::Regular, None, b"x")]);
    assert!(matches!(
        extract_tar(t.as_slice(), &out, Some("r")),
        Err(CpError::UnsafeEntry(_))
    ));

    // A symlink pointing out, then a file written through it.
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let t = raw_tar(&[
        (
            "root/l",
            tar::EntryType::Symlink,
            Some(outside.to_str().unwrap()),
            b"",
        ),
        ("root/l/pwned", tar::EntryType::Regular, None, b"x"),
    ]);
    assert!(matches!(
        extract_tar(t.as_slice(), &out, Some("root")),
        Err(CpError::UnsafeEntry(_))
    ));
    assert!(!outside.join("pwned").exists());
}
