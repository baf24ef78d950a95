//! Id-mapped mounts for user-namespaced containers: a bind mount with
//! `uidMappings`/`gidMappings` (made by the runtime before it enters the user
//! namespace) and a rootfs overlay with id-mapped lower layers (made with the
//! library, as berth-shim does). Ownership is checked with `stat` inside and
//! on the host.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_runtime::rootfs::idmap::userns_from_mappings;
use berth_runtime::rootfs::overlay::{mount_idmapped_overlay, OverlayLayers};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use serde_json::json;

use crate::support::probe::kv;
use crate::support::{Bundle, Container, Runtime};

/// Unmounts the overlay rootfs when the test ends, pass or fail.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mapping(base: u32) -> Vec<LinuxIdMapping> {
    vec![LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(base)
        .size(65536u32)
        .build()
        .unwrap()]
}

fn userns(b: &mut Bundle, base: u32, path: Option<&str>) {
    b.namespace("user", path);
    let maps = json!([{"containerID": 0, "hostID": base, "size": 65536}]);
    b.set("/linux/uidMappings", maps.clone());
    b.set("/linux/gidMappings", maps);
}

/// A host directory holding `host-root-file` (owned by host root) bound at
/// `/vol` with the container's mappings.
fn idmapped_volume(b: &mut Bundle, base: u32, options: &[&str]) -> tempfile::TempDir {
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("host-root-file"), "x").unwrap();
    b.mount("/vol", "bind", vol.path().to_str().unwrap(), options);
    let maps = json!([{"containerID": 0, "hostID": base, "size": 65536}]);
    let mounts = b.config_mut()["mounts"].as_array_mut().unwrap();
    let m = mounts.last_mut().unwrap();
    m["uidMappings"] = maps.clone();
    m["gidMappings"] = maps;
    vol
}

/// Mounts `<bundle>/merged`: the bundle's rootfs as an id-mapped lower layer
/// under a writable layer owned by the container's root.
fn idmapped_rootfs(b: &mut Bundle, base: u32) -> (Unmount, PathBuf) {
    let dir = b.path().to_path_buf();
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    std::os::unix::fs::chown(&upper, Some(base), Some(base)).unwrap();
    fs::write(b.rootfs().join("image-file"), "img").unwrap();
    let map = mapping(base);
    let ns = userns_from_mappings(&map, &map).unwrap();
    let layers = OverlayLayers {
        lowers: vec![b.rootfs()],
        upper: Some(upper.clone()),
        work: Some(work),
        ..Default::default()
    };
    mount_idmapped_overlay(&merged, &layers, ns.as_fd()).unwrap();
    b.set(
        "/root",
        json!({"path": merged.to_str().unwrap(), "readonly": false}),
    );
    (Unmount(merged), upper)
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn idmapped_rootfs_and_volume_in_a_new_user_namespace() {
    let base = 230000;
    let mut b = Bundle::new();
    userns(&mut b, base, None);
    let vol = idmapped_volume(&mut b, base, &["rbind", "rw", "idmap"]);
    let (_unmount, upper) = idmapped_rootfs(&mut b, base);
    b.sh("exec 2>&1; echo image=$(stat -c %u:%g /image-file); \
         echo bin=$(stat -c %u:%g /bin); \
         echo vol=$(stat -c %u:%g /vol/host-root-file); \
         echo > /vol/written && echo > /written && echo writes=ok");
    let mut c = Container::new(&Runtime::under_test(), "idmaproot", b);
    let f = c.run_to_exit();
    assert_eq!(kv(&f.stdout, "image").as_deref(), Some("0:0"), "{f:?}");
    assert_eq!(kv(&f.stdout, "bin").as_deref(), Some("0:0"), "{f:?}");
    assert_eq!(kv(&f.stdout, "vol").as_deref(), Some("0:0"), "{f:?}");
    assert_eq!(kv(&f.stdout, "writes").as_deref(), Some("ok"), "{f:?}");
    // The volume is mapped both ways: root's file lands as host root's.
    assert_eq!(owner(&vol.path().join("written")), (0, 0));
    assert_eq!(owner(&vol.path().join("host-root-file")), (0, 0));
    // The writable layer is not mapped: it keeps the pod's host ids.
    assert_eq!(owner(&upper.join("written")), (base, base));
}

#[test]
fn idmapped_volume_in_a_joined_user_namespace() {
    let base = 240000;
    let mut first = Bundle::new();
    userns(&mut first, base, None);
    first.args(&["sleep", "1000"]);
    let mut holder = Container::new(&Runtime::under_test(), "idmapholder", first);
    holder.launch();
    let ns = format!("/proc/{}/ns/user", holder.pid());

    let mut b = Bundle::new();
    userns(&mut b, base, Some(&ns));
    let vol = idmapped_volume(&mut b, base, &["rbind", "ro", "ridmap"]);
    fs::create_dir(vol.path().join("sub")).unwrap();
    std::os::unix::fs::chown(vol.path().join("sub"), Some(1000), Some(1000)).unwrap();
    b.sh("exec 2>&1; echo vol=$(stat -c %u:%g /vol/host-root-file); \
         echo sub=$(stat -c %u:%g /vol/sub); \
         echo uidmap=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'); \
         echo > /vol/nope 2>/dev/null && echo ro=writable || echo ro=refused");
    let mut c = Container::new(&Runtime::under_test(), "idmapjoin", b);
    let f = c.run_to_exit();
    assert_eq!(kv(&f.stdout, "vol").as_deref(), Some("0:0"), "{f:?}");
    assert_eq!(kv(&f.stdout, "sub").as_deref(), Some("1000:1000"), "{f:?}");
    assert_eq!(
        kv(&f.stdout, "uidmap").as_deref(),
        Some(format!("0 {base} 65536").as_str()),
        "{f:?}"
    );
    assert_eq!(kv(&f.stdout, "ro").as_deref(), Some("refused"), "{f:?}");
    drop(c);
    drop(holder);
}

#[test]
fn idmap_without_mappings_uses_the_containers_user_namespace() {
    let mut b = Bundle::new();
    userns(&mut b, 250000, None);
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("host-root-file"), "x").unwrap();
    b.mount(
        "/vol",
        "bind",
        vol.path().to_str().unwrap(),
        &["bind", "idmap"],
    );
    b.sh("exec 2>&1; echo vol=$(stat -c %u:%g /vol/host-root-file)");
    let mut c = Container::new(&Runtime::under_test(), "idmapnomap", b);
    let f = c.run_to_exit();
    assert_eq!(kv(&f.stdout, "vol").as_deref(), Some("0:0"), "{f:?}");
}

#[test]
fn idmap_without_mappings_or_user_namespace_is_refused_before_the_clone() {
    let mut b = Bundle::new();
    let vol = tempfile::tempdir().unwrap();
    b.mount(
        "/vol",
        "bind",
        vol.path().to_str().unwrap(),
        &["bind", "idmap"],
    );
    let mut c = Container::new(&Runtime::under_test(), "idmaprefused", b);
    let out = c.create();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("without uidMappings"),
        "error does not say why: {out}"
    );
}
