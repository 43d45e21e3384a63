//! The CRI ImageService over rkube's image store: list, status, pull with
//! the pull secret's credentials, remove, file system usage.

use std::sync::Arc;

use base64::Engine as _;
use rkube_cri::api as cri;
use rkube_cri::api::image_service_server::ImageService;
use rkube_imagestore::{Credentials, Image};
use tonic::{Request, Response, Status};

use crate::service::Crio;
use crate::Error;

/// The gRPC face of the image store.
#[derive(Clone)]
pub struct ImageApi(pub(crate) Arc<Crio>);

type Res<T> = std::result::Result<Response<T>, Status>;

/// CRI image record of a stored image.
fn to_cri(i: &Image) -> cri::Image {
    let (uid, username) = match i
        .config
        .user()
        .as_deref()
        .map(|u| u.split(':').next().unwrap_or(""))
    {
        Some(u) if !u.is_empty() => match u.parse::<i64>() {
            Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
            Err(_) => (None, u.to_string()),
        },
        _ => (None, String::new()),
    };
    cri::Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// Credentials from a CRI AuthConfig (what the node agent read from the
/// pod's imagePullSecrets).
pub(crate) fn credentials(a: Option<cri::AuthConfig>) -> Option<Credentials> {
    let a = a?;
    if !a.username.is_empty() || !a.password.is_empty() {
        return Some(Credentials::Basic {
            username: a.username,
            password: a.password,
        });
    }
    if !a.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        });
    }
    for token in [a.registry_token, a.identity_token] {
        if !token.is_empty() {
            return Some(Credentials::Bearer(token));
        }
    }
    None
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
        let images = match filter {
            Some(reference) => self
                .0
                .images
                .get(&reference)
                .map_err(Error::internal)?
                .into_iter()
                .collect(),
            None => self.0.images.list().map_err(Error::internal)?,
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(to_cri).collect(),
        }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Res<cri::ImageStatusResponse> {
        let spec = r.into_inner().image.unwrap_or_default();
        let image = if spec.image.is_empty() {
            None
        } else {
            self.0.images.get(&spec.image).map_err(Error::internal)?
        };
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(to_cri),
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, r: Request<cri::PullImageRequest>) -> Res<cri::PullImageResponse> {
        let r = r.into_inner();
        let reference = r.image.map(|i| i.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Error::InvalidArgument("PullImageRequest.Image is required".into()).into());
        }
        let image = self
            .0
            .puller
            .pull(&reference, credentials(r.auth))
            .await
            .map_err(Error::Pull)?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: image.id,
        }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Res<cri::RemoveImageResponse> {
        let reference = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        // Removing an image that is not there succeeds (CRI: idempotent).
        self.0.images.remove(&reference).map_err(Error::internal)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Res<cri::ImageFsInfoResponse> {
        let u = self.0.images.usage().map_err(Error::internal)?;
        let fs = cri::FilesystemUsage {
            timestamp: crate::now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: self.0.images.root().to_string_lossy().into_owned(),
            }),
            used_bytes: Some(cri::UInt64Value {
                value: u.used_bytes,
            }),
            inodes_used: Some(cri::UInt64Value {
                value: u.inodes_used,
            }),
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
    fn credentials_from_auth_config() {
        let basic = credentials(Some(cri::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }));
        assert!(
            matches!(basic, Some(Credentials::Basic { ref username, ref password }) if username == "u" && password == "p")
        );
        let encoded = credentials(Some(cri::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"),
            ..Default::default()
        }));
        assert!(
            matches!(encoded, Some(Credentials::Basic { ref username, ref password }) if username == "alice" && password == "s3:cret")
        );
        let token = credentials(Some(cri::AuthConfig {
            registry_token: "tok".into(),
            ..Default::default()
        }));
        assert!(matches!(token, Some(Credentials::Bearer(ref t)) if t == "tok"));
        assert!(credentials(Some(cri::AuthConfig::default())).is_none());
        assert!(credentials(None).is_none());
    }
}
