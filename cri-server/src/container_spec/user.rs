//! The container's user: uid, primary gid and supplementary gids from the
//! CRI security context or the image's `USER`, resolved through the image's
//! own `/etc/passwd` and `/etc/group` (never the host's).

use berth_proto::cri::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};

use super::SpecBuildError;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Numeric group id.
    pub gid: u32,
    /// User names listed as members.
    pub members: Vec<String>,
}

/// The users and groups of an image, parsed from its passwd and group files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    users: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

fn parse_id(s: &str) -> Option<u32> {
    s.trim().parse().ok()
}

impl UserDb {
    /// Parses passwd and group file contents. Malformed lines (too few
    /// fields, non-numeric ids) and comments are skipped, as libc does, so
    /// one bad line does not hide every other user.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 4 || f[0].is_empty() {
                    return None;
                }
                Some(PasswdEntry {
                    name: f[0].to_string(),
                    uid: parse_id(f[2])?,
                    gid: parse_id(f[3])?,
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 3 || f[0].is_empty() {
                    return None;
                }
                let members = f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                Some(GroupEntry {
                    name: f[0].to_string(),
                    gid: parse_id(f[2])?,
                    members,
                })
            })
            .collect();
        Self { users, groups }
    }

    /// The first passwd entry with this name.
    pub fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The first passwd entry with this uid.
    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    /// The first group entry with this name.
    pub fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Gids of every group listing `user` as a member, in file order.
    pub fn groups_of(&self, user: &str) -> Vec<u32> {
        self.groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect()
    }
}

/// The user the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (the primary gid first, no duplicates).
    pub additional_gids: Vec<u32>,
    /// The passwd name of the user, when it has one.
    pub username: Option<String>,
}

fn to_id(what: &'static str, v: i64) -> Result<u32, SpecBuildError> {
    u32::try_from(v).map_err(|_| SpecBuildError::InvalidId { what, value: v })
}

/// Resolves the user from the security context (runAsUser, then
/// runAsUsername, then the image's USER; runAsGroup overrides the group
/// part) and the supplementary groups by the context's policy: `Merge`
/// adds the groups that list the user in the image's /etc/group, `Strict`
/// only the primary gid and the given supplementalGroups.
pub fn resolve_user(
    db: &UserDb,
    sc: Option<&LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<ResolvedUser, SpecBuildError> {
    let run_as_user = sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value);
    let run_as_group = sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value);
    let run_as_username = sc.map(|s| s.run_as_username.as_str()).unwrap_or("");

    // As containerd: the user part and the group part are chosen separately.
    let (user_part, mut group_part) = match (run_as_user, run_as_username) {
        (Some(uid), _) => (to_id("runAsUser", uid)?.to_string(), None),
        (None, name) if !name.is_empty() => split_user(name),
        _ => split_user(image_user.trim()),
    };
    if let Some(gid) = run_as_group {
        // As containerd (and critest checks it): a group needs a user given
        // in the same context, not one inherited from the image.
        if run_as_user.is_none() && run_as_username.is_empty() {
            return Err(SpecBuildError::RunAsGroupWithoutUser { gid });
        }
        group_part = Some(to_id("runAsGroup", gid)?.to_string());
    }

    let (uid, username, passwd_gid) = if user_part.is_empty() {
        let root = db.user_by_uid(0);
        (0, root.map(|u| u.name.clone()), root.map(|u| u.gid))
    } else if let Some(uid) = numeric(&user_part) {
        // A numeric uid need not exist in /etc/passwd (gid 0 then).
        let entry = db.user_by_uid(uid);
        (uid, entry.map(|u| u.name.clone()), entry.map(|u| u.gid))
    } else {
        let entry = db
            .user_by_name(&user_part)
            .ok_or_else(|| SpecBuildError::UnknownUser {
                user: user_part.clone(),
            })?;
        (entry.uid, Some(entry.name.clone()), Some(entry.gid))
    };

    let gid = match group_part.as_deref() {
        None | Some("") => passwd_gid.unwrap_or(0),
        Some(g) => match numeric(g) {
            Some(gid) => gid,
            None => {
                db.group_by_name(g)
                    .ok_or_else(|| SpecBuildError::UnknownGroup {
                        group: g.to_string(),
                    })?
                    .gid
            }
        },
    };

    let policy = sc
        .map(|s| s.supplemental_groups_policy)
        .and_then(|p| SupplementalGroupsPolicy::try_from(p).ok())
        .unwrap_or(SupplementalGroupsPolicy::Merge);
    let mut gids = vec![gid];
    if policy == SupplementalGroupsPolicy::Merge {
        if let Some(name) = &username {
            gids.extend(db.groups_of(name));
        }
    }
    for g in sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]) {
        gids.push(to_id("supplementalGroups", *g)?);
    }
    let mut additional_gids = Vec::with_capacity(gids.len());
    for g in gids {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        username,
    })
}

fn numeric(s: &str) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn split_user(spec: &str) -> (String, Option<String>) {
    match spec.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (spec.to_string(), None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri::Int64Value;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1::/:/bin/false\n\
        broken line\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        bob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        users:x:100:\n\
        alice:x:1000:\n\
        wheel:x:10:alice,bob\n\
        audio:x:29:bob\n\
        staff:x:50:\n";

    fn db() -> UserDb {
        UserDb::parse(PASSWD, GROUP)
    }

    fn sc() -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext::default()
    }

    #[test]
    fn parse_skips_malformed_lines() {
        let db = db();
        assert_eq!(db.users.len(), 4);
        assert_eq!(db.user_by_name("bob").unwrap().gid, 100);
        assert_eq!(db.groups_of("bob"), vec![10, 29]);
        assert_eq!(db.group_by_name("staff").unwrap().gid, 50);
    }

    #[test]
    fn empty_image_user_is_root() {
        let u = resolve_user(&db(), None, "").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.username.as_deref(), Some("root"));
    }

    #[test]
    fn image_user_forms() {
        let db = db();
        let u = resolve_user(&db, None, "alice").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 10]);
        let u = resolve_user(&db, None, "1001").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 100));
        let u = resolve_user(&db, None, "1001:50").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 50));
        let u = resolve_user(&db, None, "bob:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 50));
        // A uid missing from /etc/passwd is fine, with gid 0.
        let u = resolve_user(&db, None, "4242").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.username, None);
        assert_eq!(u.additional_gids, vec![0]);
    }

    #[test]
    fn unknown_names_are_errors() {
        let db = db();
        let err = resolve_user(&db, None, "mallory").unwrap_err();
        assert!(matches!(err, SpecBuildError::UnknownUser { ref user } if user == "mallory"));
        assert!(err.is_invalid_argument());
        let err = resolve_user(&db, None, "alice:nogroup").unwrap_err();
        assert!(matches!(err, SpecBuildError::UnknownGroup { .. }));
        let mut s = sc();
        s.run_as_username = "nobody".into();
        assert!(resolve_user(&db, Some(&s), "").is_err());
    }

    #[test]
    fn run_as_user_and_group_override_the_image() {
        let db = db();
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 1000 });
        let u = resolve_user(&db, Some(&s), "bob").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        s.run_as_group = Some(Int64Value { value: 29 });
        let u = resolve_user(&db, Some(&s), "bob").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 29));
        // runAsGroup alone is refused, as containerd does (critest checks it).
        let mut s = sc();
        s.run_as_group = Some(Int64Value { value: 7 });
        assert!(matches!(
            resolve_user(&db, Some(&s), "bob").unwrap_err(),
            SpecBuildError::RunAsGroupWithoutUser { gid: 7 }
        ));
        s.run_as_username = "bob".into();
        let u = resolve_user(&db, Some(&s), "").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 7));
        s.run_as_username.clear();
        s.run_as_user = Some(Int64Value { value: -1 });
        assert!(matches!(
            resolve_user(&db, Some(&s), "").unwrap_err(),
            SpecBuildError::InvalidId { .. }
        ));
    }

    #[test]
    fn run_as_username() {
        let mut s = sc();
        s.run_as_username = "bob".into();
        let u = resolve_user(&db(), Some(&s), "alice").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 100));
    }

    #[test]
    fn supplemental_groups_merge_and_strict() {
        let db = db();
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 1001 });
        s.supplemental_groups = vec![5000, 10];
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Merge as i32;
        let u = resolve_user(&db, Some(&s), "").unwrap();
        assert_eq!(u.additional_gids, vec![100, 10, 29, 5000]);
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        let u = resolve_user(&db, Some(&s), "").unwrap();
        assert_eq!(u.additional_gids, vec![100, 5000, 10]);
    }
}
