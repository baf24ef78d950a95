//! The berth.v1 Containers gRPC service: decodes, calls the [`Engine`],
//! maps errors. Each call runs in a span naming the container.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::containers_server::Containers;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info_span, Instrument};

use super::copy::{absolute, archive_path, extract, path_stat, stat_in_root};
use super::engine::Engine;
use super::error::ApiError;
use crate::streaming::StreamingService;

/// Size of the tar chunks CopyFrom sends.
const CHUNK: usize = 64 * 1024;

/// berth.v1.Containers over an [`Engine`].
#[derive(Debug, Clone)]
pub struct ContainersApi {
    engine: Arc<Engine>,
    streaming: Arc<StreamingService>,
}

impl ContainersApi {
    /// A service over `engine`, handing out exec URLs of `streaming`.
    pub fn new(engine: Arc<Engine>, streaming: Arc<StreamingService>) -> ContainersApi {
        ContainersApi { engine, streaming }
    }
}

type Result<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(r: std::result::Result<T, ApiError>) -> Result<T> {
    r.map(Response::new).map_err(Status::from)
}

fn cref(id: &str) -> api::ContainerRef {
    api::ContainerRef {
        container: id.to_string(),
    }
}

/// Writes tar bytes into the response channel from a blocking thread.
struct ChannelWriter {
    tx: mpsc::Sender<std::result::Result<api::CopyFromResponse, Status>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Ok(api::CopyFromResponse {
                part: Some(api::copy_from_response::Part::Data(data)),
            }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Reads the chunks CopyTo receives, on a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: std::io::Cursor<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.cur.read(out)?;
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(next) => self.cur = std::io::Cursor::new(next),
                None => return Ok(0),
            }
        }
    }
}

#[tonic::async_trait]
impl Containers for ContainersApi {
    async fn create(
        &self,
        request: Request<api::CreateContainerRequest>,
    ) -> Result<api::CreateContainerResponse> {
        let spec = request.into_inner().spec.unwrap_or_default();
        let span = info_span!("berth.Create", image = %spec.image, name = %spec.name);
        reply(
            async {
                let (id, name) = self.engine.create(spec).await?;
                Ok(api::CreateContainerResponse {
                    id,
                    name,
                    warnings: Vec::new(),
                })
            }
            .instrument(span)
            .await,
        )
    }

    async fn start(&self, request: Request<api::ContainerRef>) -> Result<api::ContainerRef> {
        let r = request.into_inner().container;
        let span = info_span!("berth.Start", container = %r);
        reply(
            self.engine
                .start(&r)
                .instrument(span)
                .await
                .map(|rec| cref(rec.id())),
        )
    }

    async fn stop(&self, request: Request<api::StopContainerRequest>) -> Result<api::ContainerRef> {
        let r = request.into_inner();
        let span = info_span!("berth.Stop", container = %r.container, timeout = r.timeout);
        reply(
            self.engine
                .stop(&r.container, r.timeout, &r.signal)
                .instrument(span)
                .await
                .map(|rec| cref(rec.id())),
        )
    }

    async fn restart(
        &self,
        request: Request<api::StopContainerRequest>,
    ) -> Result<api::ContainerRef> {
        let r = request.into_inner();
        let span = info_span!("berth.Restart", container = %r.container);
        reply(
            self.engine
                .restart(&r.container, r.timeout)
                .instrument(span)
                .await
                .map(|rec| cref(rec.id())),
        )
    }

    async fn kill(&self, request: Request<api::KillContainerRequest>) -> Result<api::ContainerRef> {
        let r = request.into_inner();
        let span = info_span!("berth.Kill", container = %r.container, signal = %r.signal);
        reply(
            self.engine
                .kill(&r.container, &r.signal)
                .instrument(span)
                .await
                .map(|rec| cref(rec.id())),
        )
    }

    async fn remove(
        &self,
        request: Request<api::RemoveContainerRequest>,
    ) -> Result<api::ContainerRef> {
        let r = request.into_inner();
        let span = info_span!("berth.Remove", container = %r.container, force = r.force);
        reply(
            self.engine
                .remove(&r.container, r.force, r.volumes)
                .instrument(span)
                .await
                .map(|rec| cref(rec.id())),
        )
    }

    async fn list(
        &self,
        request: Request<api::ListContainersRequest>,
    ) -> Result<api::ListContainersResponse> {
        let r = request.into_inner();
        reply(
            self.engine
                .list(&r)
                .await
                .map(|containers| api::ListContainersResponse { containers }),
        )
    }

    async fn inspect(
        &self,
        request: Request<api::ContainerRef>,
    ) -> Result<api::InspectContainerResponse> {
        let r = request.into_inner().container;
        reply(
            self.engine
                .inspect(&r)
                .await
                .map(|v| api::InspectContainerResponse {
                    json: serde_json::to_string_pretty(&v).unwrap_or_default(),
                }),
        )
    }

    async fn wait(
        &self,
        request: Request<api::ContainerRef>,
    ) -> Result<api::WaitContainerResponse> {
        let r = request.into_inner().container;
        let span = info_span!("berth.Wait", container = %r);
        reply(
            self.engine
                .wait(&r)
                .instrument(span)
                .await
                .map(|exit_code| api::WaitContainerResponse { exit_code }),
        )
    }

    async fn rename(
        &self,
        request: Request<api::RenameContainerRequest>,
    ) -> Result<api::ContainerRef> {
        let r = request.into_inner();
        let span = info_span!("berth.Rename", container = %r.container, new_name = %r.new_name);
        reply(
            self.engine
                .rename(&r.container, &r.new_name)
                .instrument(span)
                .await
                .map(|rec| cref(rec.id())),
        )
    }

    async fn top(&self, request: Request<api::TopRequest>) -> Result<api::TopResponse> {
        let r = request.into_inner();
        reply(self.engine.top(&r.container).await)
    }

    async fn diff(&self, request: Request<api::ContainerRef>) -> Result<api::DiffResponse> {
        let r = request.into_inner().container;
        reply(
            self.engine
                .diff(&r)
                .await
                .map(|changes| api::DiffResponse { changes }),
        )
    }

    async fn stat_path(&self, request: Request<api::PathRequest>) -> Result<api::PathStat> {
        let r = request.into_inner();
        let result = async {
            let rec = self.engine.resolve(&r.container).await?;
            let root = self.engine.container_root(&rec).await?;
            let path = absolute(&root.cwd, &r.path);
            tokio::task::spawn_blocking(move || {
                let (fd, st) = stat_in_root(std::os::fd::AsFd::as_fd(&root.fd), &path)?;
                Ok::<_, ApiError>(path_stat(std::os::fd::AsFd::as_fd(&fd), &st, &path))
            })
            .await?
        }
        .await;
        reply(result)
    }

    type CopyFromStream = ReceiverStream<std::result::Result<api::CopyFromResponse, Status>>;

    async fn copy_from(&self, request: Request<api::PathRequest>) -> Result<Self::CopyFromStream> {
        let r = request.into_inner();
        let span = info_span!("berth.CopyFrom", container = %r.container, path = %r.path);
        let prepared = async {
            let rec = self.engine.resolve(&r.container).await?;
            let root = self.engine.container_root(&rec).await?;
            let path = absolute(&root.cwd, &r.path);
            // Checked before streaming so a missing path is a NotFound status.
            let (fd, st) = stat_in_root(std::os::fd::AsFd::as_fd(&root.fd), &path)?;
            let stat = path_stat(std::os::fd::AsFd::as_fd(&fd), &st, &path);
            Ok::<_, ApiError>((root, path, stat))
        }
        .instrument(span.clone())
        .await;
        let (root, path, stat) = prepared.map_err(Status::from)?;
        let (tx, rx) = mpsc::channel(8);
        let _ = tx
            .send(Ok(api::CopyFromResponse {
                part: Some(api::copy_from_response::Part::Stat(stat)),
            }))
            .await;
        tokio::task::spawn_blocking(move || {
            let _g = span.enter();
            let mut w = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::new(),
            };
            if let Err(e) = archive_path(std::os::fd::AsFd::as_fd(&root.fd), &path, &mut w) {
                let _ = tx.blocking_send(Err(Status::from(ApiError::from(e))));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn copy_to(
        &self,
        request: Request<Streaming<api::CopyToRequest>>,
    ) -> Result<api::CopyToResponse> {
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty CopyTo stream"))??;
        let Some(api::copy_to_request::Part::Target(target)) = first.part else {
            return Err(Status::invalid_argument(
                "the first CopyTo message must name the target",
            ));
        };
        let span = info_span!("berth.CopyTo", container = %target.container, path = %target.path);
        let rec = self
            .engine
            .resolve(&target.container)
            .instrument(span.clone())
            .await?;
        let root = self.engine.container_root(&rec).await?;
        let dir = absolute(&root.cwd, &target.path);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
        let no_overwrite = target.no_overwrite_dir_non_dir;
        let worker = tokio::task::spawn_blocking(move || {
            let _g = span.enter();
            let reader = ChannelReader {
                rx,
                cur: std::io::Cursor::new(Vec::new()),
            };
            extract(
                std::os::fd::AsFd::as_fd(&root.fd),
                &dir,
                reader,
                no_overwrite,
            )
        });
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if let Some(api::copy_to_request::Part::Data(d)) = msg.part {
                // The extractor stopped early (an error it reports below).
                if tx.send(d).await.is_err() {
                    break;
                }
            }
        }
        drop(tx);
        let result = worker.await.map_err(ApiError::from)?;
        reply(
            result
                .map(|()| api::CopyToResponse {})
                .map_err(ApiError::from),
        )
    }

    type LogsStream =
        Pin<Box<dyn Stream<Item = std::result::Result<api::LogEntry, Status>> + Send + 'static>>;

    async fn logs(&self, request: Request<api::LogsRequest>) -> Result<Self::LogsStream> {
        let r = request.into_inner();
        let rx = self.engine.logs(r).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resolve(&self, request: Request<api::ContainerRef>) -> Result<api::ResolveResponse> {
        let r = request.into_inner().container;
        reply(
            self.engine
                .resolve(&r)
                .await
                .map(|rec| api::ResolveResponse {
                    container_id: rec.id().to_string(),
                    pod_id: rec.row.pod_id.clone(),
                    name: rec.name().to_string(),
                }),
        )
    }

    async fn exec(&self, request: Request<api::ExecRequest>) -> Result<api::ExecResponse> {
        let r = request.into_inner();
        let span = info_span!("berth.Exec", container = %r.container, tty = r.tty);
        reply(
            super::exec::exec_url(&self.engine, &self.streaming, r)
                .instrument(span)
                .await
                .map(|url| api::ExecResponse { url }),
        )
    }
}
