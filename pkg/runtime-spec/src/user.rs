//! Resolving the user a container runs as: the CRI security context
//! (run_as_user, run_as_username, run_as_group, supplemental groups) or
//! the image's `User`, looked up in the rootfs's /etc/passwd and
//! /etc/group as the OCI runtime would not.

use std::path::Path;

use rkube_cri::api as cri;

use crate::{Error, Result};

/// uid, gid and additional gids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The name, when known (for group membership).
    pub name: Option<String>,
}

fn passwd(rootfs: &Path) -> Vec<(String, u32, u32)> {
    std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

fn groups(rootfs: &Path) -> Vec<(String, u32, Vec<String>)> {
    std::fs::read_to_string(rootfs.join("etc/group"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

/// Resolves the user of a container.
pub fn resolve_user(
    rootfs: &Path,
    image_user: Option<&str>,
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> Result<User> {
    let pw = passwd(rootfs);
    let grp = groups(rootfs);
    let by_uid = |uid: u32| pw.iter().find(|p| p.1 == uid);
    let lookup_user = |spec: &str| -> Result<(u32, u32, Option<String>)> {
        if let Ok(uid) = spec.parse::<u32>() {
            let e = by_uid(uid);
            return Ok((uid, e.map(|e| e.2).unwrap_or(0), e.map(|e| e.0.clone())));
        }
        pw.iter()
            .find(|p| p.0 == spec)
            .map(|p| (p.1, p.2, Some(p.0.clone())))
            .ok_or_else(|| {
                Error::User(format!(
                    "unable to find user {spec}: no matching entries in passwd file"
                ))
            })
    };
    let lookup_group = |spec: &str| -> Result<u32> {
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(gid);
        }
        grp.iter()
            .find(|g| g.0 == spec)
            .map(|g| g.1)
            .ok_or_else(|| {
                Error::User(format!(
                    "unable to find group {spec}: no matching entries in group file"
                ))
            })
    };
    let (mut uid, mut gid, mut name) = (0, 0, Some("root".to_string()));
    let mut explicit_group = None;
    if let Some(u) = image_user.filter(|u| !u.is_empty()) {
        let (user, group) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        (uid, gid, name) = lookup_user(user)?;
        if let Some(g) = group {
            explicit_group = Some(lookup_group(g)?);
        }
    }
    if let Some(sc) = sc {
        if let Some(u) = &sc.run_as_user {
            (uid, gid, name) = match by_uid(u.value as u32) {
                Some(e) => (u.value as u32, e.2, Some(e.0.clone())),
                None => (u.value as u32, 0, None),
            };
            explicit_group = None;
        } else if !sc.run_as_username.is_empty() {
            (uid, gid, name) = lookup_user(&sc.run_as_username)?;
            explicit_group = None;
        }
        if let Some(g) = &sc.run_as_group {
            explicit_group = Some(g.value as u32);
        }
    }
    if let Some(g) = explicit_group {
        gid = g;
    }
    let mut additional: Vec<u32> = vec![gid];
    if let Some(n) = &name {
        for g in &grp {
            if g.2.iter().any(|m| m == n) && !additional.contains(&g.1) {
                additional.push(g.1);
            }
        }
    }
    if let Some(sc) = sc {
        for g in &sc.supplemental_groups {
            let g = *g as u32;
            if !additional.contains(&g) {
                additional.push(g);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n").unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:bob,www\nbob:x:1000:\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn image_user_forms() {
        let r = rootfs();
        let u = resolve_user(r.path(), None, None).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let u = resolve_user(r.path(), Some("www"), None).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (33, 33, vec![33, 50])
        );
        let u = resolve_user(r.path(), Some("1000:staff"), None).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        let u = resolve_user(r.path(), Some("www:staff"), None).unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        assert!(resolve_user(r.path(), Some("www:nogroup"), None)
            .unwrap_err()
            .to_string()
            .contains("unable to find group nogroup"));
        let bare = tempfile::tempdir().unwrap();
        let u = resolve_user(bare.path(), Some("1234"), None).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1234, 0, vec![0]));
        let u = resolve_user(r.path(), Some("4242"), None).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        let err = resolve_user(r.path(), Some("nobody-here"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unable to find user nobody-here"), "{err}");
    }

    #[test]
    fn security_context_wins() {
        let r = rootfs();
        let sc = cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            run_as_group: Some(cri::Int64Value { value: 3000 }),
            supplemental_groups: vec![4000],
            ..Default::default()
        };
        let u = resolve_user(r.path(), Some("www"), Some(&sc)).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 3000));
        assert_eq!(u.additional_gids, vec![3000, 50, 4000]);
        let sc = cri::LinuxContainerSecurityContext {
            run_as_username: "bob".into(),
            ..Default::default()
        };
        let u = resolve_user(r.path(), None, Some(&sc)).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
    }
}
