//! Images on docker: the CRI ImageService over dockerd's image store,
//! pulls with the pod's pull-secret credentials through the profile's
//! registry mirrors (for every registry host, and never past a mirror-only
//! mirror: the shim picks the endpoint, dockerd only pulls it), and
//! `docker load` of archives for `rkube image load`.

use std::sync::Arc;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use futures::StreamExt;
use rkube_cri::api as cri;
use rkube_cri::api::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::shim::Shim;
use crate::{Error, Result};

/// The ImageService of the shim.
#[derive(Clone)]
pub(crate) struct ImageApi(pub(crate) Arc<Shim>);

type Res<T> = std::result::Result<Response<T>, Status>;

/// An image as CRI shows it, from Docker's inspect.
fn to_cri(i: bollard::models::ImageInspect) -> cri::Image {
    let user = i
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let user = user.split(':').next().unwrap_or("").to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) => (None, user),
    };
    let id = i.id.unwrap_or_default();
    cri::Image {
        spec: Some(cri::ImageSpec {
            image: id.clone(),
            ..Default::default()
        }),
        id,
        repo_tags: i.repo_tags.unwrap_or_default(),
        repo_digests: i.repo_digests.unwrap_or_default(),
        size: i.size.unwrap_or(0).max(0) as u64,
        uid,
        username,
        pinned: false,
    }
}

/// Docker credentials from a CRI AuthConfig.
fn credentials(a: Option<cri::AuthConfig>, server: &str) -> Option<DockerCredentials> {
    let a = a?;
    let (mut username, mut password) = (a.username, a.password);
    if username.is_empty() && !a.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        (username, password) = (u.to_string(), p.to_string());
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    Some(DockerCredentials {
        username: some(username),
        password: some(password),
        serveraddress: Some(if a.server_address.is_empty() {
            server.to_string()
        } else {
            a.server_address
        }),
        identitytoken: some(a.identity_token),
        registrytoken: some(a.registry_token),
        ..Default::default()
    })
}

/// `host/repository` with the tag or digest of `name`.
fn reference_on(host: &str, name: &rkube_imagestore::Name) -> String {
    let mut s = format!("{host}/{}", name.repository);
    if let Some(d) = &name.digest {
        s.push('@');
        s.push_str(d);
    } else if let Some(t) = &name.tag {
        s.push(':');
        s.push_str(t);
    }
    s
}

/// Pulls one reference through dockerd, to the end of its progress.
async fn pull_one(
    docker: &bollard::Docker,
    reference: &str,
    creds: Option<DockerCredentials>,
) -> Result<()> {
    let mut progress = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(reference.to_string()),
            ..Default::default()
        }),
        None,
        creds,
    );
    while let Some(item) = progress.next().await {
        let item = item?;
        if let Some(e) = item.error {
            return Err(Error::Docker(e));
        }
    }
    Ok(())
}

impl Shim {
    /// Pulls `reference` from the first of its endpoints that has it: the
    /// registry's mirrors in order, then the registry itself unless a
    /// mirror is mirror-only. Returns the image ID.
    pub(crate) async fn pull(
        &self,
        reference: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String> {
        let name = rkube_imagestore::parse_reference(reference)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let wanted = name.full();
        let mut last = None;
        for e in rkube_imagestore::endpoints(&name, &self.cfg.registries) {
            let from = reference_on(&e.host, &name);
            match pull_one(&self.docker, &from, credentials(auth.clone(), &e.host)).await {
                Ok(()) => {
                    if from != wanted && name.digest.is_none() {
                        self.docker
                            .tag_image(
                                &from,
                                Some(TagImageOptions {
                                    repo: Some(name.repo()),
                                    tag: name.tag.clone(),
                                }),
                            )
                            .await?;
                    }
                    let id = self
                        .docker
                        .inspect_image(&from)
                        .await?
                        .id
                        .unwrap_or_default();
                    return Ok(id);
                }
                Err(err) => {
                    tracing::info!(image = %reference, endpoint = %e.host, "pull failed: {err}");
                    last = Some(err);
                }
            }
        }
        Err(match last {
            Some(e) => Error::Runtime(format!("pulling image {reference:?}: {e}")),
            None => Error::Runtime(format!("no registry to pull {reference:?} from")),
        })
    }
}

/// The image reference a container status reports, as kubelet's dockershim
/// did: `docker-pullable://<repo>@<digest>` when the image came from a
/// registry (so the manifest digest is visible), else `docker://<image id>`.
pub(crate) async fn status_ref(docker: &bollard::Docker, image_id: &str) -> String {
    let digests = match docker.inspect_image(image_id).await {
        Ok(i) => i.repo_digests.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    match digests.first() {
        Some(d) => format!("docker-pullable://{d}"),
        None => format!("docker://{image_id}"),
    }
}

/// Loads an image archive (docker-archive, as `docker save` writes and
/// rkube's own archives are) into dockerd; returns the names loaded.
pub async fn load(docker: &bollard::Docker, archive: &std::path::Path) -> Result<Vec<String>> {
    let bytes = tokio::fs::read(archive)
        .await
        .map_err(Error::io("read", archive))?;
    let mut out = docker.import_image(
        ImportImageOptions {
            quiet: true,
            platform: None,
        },
        bollard::body_full(bytes.into()),
        None,
    );
    let mut names = Vec::new();
    while let Some(item) = out.next().await {
        let item = item?;
        if let Some(e) = item.error {
            return Err(Error::InvalidArgument(format!(
                "dockerd cannot load {}: {e} (it loads docker-archive tars, as written by \
                 `docker save` or `skopeo copy ... docker-archive:FILE`)",
                archive.display()
            )));
        }
        for text in [item.stream, item.status].into_iter().flatten() {
            for line in text.lines() {
                for prefix in ["Loaded image: ", "Loaded image ID: "] {
                    if let Some(n) = line.trim().strip_prefix(prefix) {
                        names.push(n.to_string());
                    }
                }
            }
        }
    }
    Ok(names)
}

/// Every image dockerd has (its tags, digests and size).
pub async fn list(docker: &bollard::Docker) -> Result<Vec<bollard::models::ImageSummary>> {
    Ok(docker
        .list_images(Some(ListImagesOptions {
            all: false,
            ..Default::default()
        }))
        .await?)
}

/// Removes an image by name or ID (every name it has).
pub async fn remove(docker: &bollard::Docker, reference: &str) -> Result<()> {
    docker
        .remove_image(
            reference,
            Some(RemoveImageOptions {
                force: true,
                noprune: false,
            }),
            None,
        )
        .await?;
    Ok(())
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Res<cri::ListImagesResponse> {
        let filter = r
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let refs: Vec<String> = match filter {
            Some(reference) => vec![reference],
            None => list(&self.0.docker)
                .await?
                .into_iter()
                .map(|i| i.id)
                .collect(),
        };
        let mut images = Vec::new();
        for r in refs {
            if let Ok(i) = self.0.docker.inspect_image(&r).await {
                images.push(to_cri(i));
            }
        }
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Res<cri::ImageStatusResponse> {
        let spec = r.into_inner().image.unwrap_or_default();
        let image = if spec.image.is_empty() {
            None
        } else {
            match self.0.docker.inspect_image(&spec.image).await {
                Ok(i) => Some(to_cri(i)),
                Err(e) => match Error::from(e) {
                    Error::NotFound(_) => None,
                    other => return Err(other.into()),
                },
            }
        };
        Ok(Response::new(cri::ImageStatusResponse {
            image,
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, r: Request<cri::PullImageRequest>) -> Res<cri::PullImageResponse> {
        let r = r.into_inner();
        let reference = r.image.map(|i| i.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Error::InvalidArgument("PullImageRequest.Image is required".into()).into());
        }
        let image_ref = self.0.pull(&reference, r.auth).await?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Res<cri::RemoveImageResponse> {
        let reference = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        match remove(&self.0.docker, &reference).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Res<cri::ImageFsInfoResponse> {
        let info = self.0.docker.info().await.map_err(Error::from)?;
        let used: i64 = list(&self.0.docker)
            .await?
            .iter()
            .map(|i| i.size.max(0))
            .sum();
        let fs = cri::FilesystemUsage {
            timestamp: crate::now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: info.docker_root_dir.unwrap_or_default(),
            }),
            used_bytes: Some(cri::UInt64Value { value: used as u64 }),
            inodes_used: None,
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_references_keep_the_repository() {
        let name = rkube_imagestore::parse_reference("busybox").unwrap();
        assert_eq!(
            reference_on("127.0.0.1:5000", &name),
            "127.0.0.1:5000/library/busybox:latest"
        );
        assert_eq!(name.full(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn credentials_from_auth_field() {
        let c = credentials(
            Some(cri::AuthConfig {
                auth: base64::engine::general_purpose::STANDARD.encode("e2e:s3cret"),
                ..Default::default()
            }),
            "127.0.0.1:5001",
        )
        .unwrap();
        assert_eq!(c.username.as_deref(), Some("e2e"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5001"));
        assert!(credentials(None, "x").is_none());
    }
}
